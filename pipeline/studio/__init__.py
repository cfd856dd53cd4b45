"""The studio: a Streamlit page over the same manifest -> plan -> run path as `campaign run` (see app.py)."""
