"""Serving: the OpenVINO Model Server export, the KServe v2 server (its own environment) and load tests."""
