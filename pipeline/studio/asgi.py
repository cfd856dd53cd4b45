"""The studio's server: Streamlit's st.App running app.py behind the gate (gate.py), started by server.py."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from pipeline.studio.gate import Gate

# `streamlit run` finds this st.App in the file (streamlit/web/server/app_discovery.py) and serves it with uvicorn;
# user middleware runs before Streamlit's own routes, its websocket included (st.App's `middleware` parameter)
app = st.App(Path(__file__).with_name("app.py"), middleware=[Middleware(Gate)])
