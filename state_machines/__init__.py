"""The campaign state machine: its ASL builder (build.py) and the committed output (campaign.asl.json)."""
