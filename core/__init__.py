"""Flower classifier: data, training, OpenVINO conversion, inference and benchmarks.

Plain Python with no UI imports; the Streamlit pages and the CLI (`python -m core`)
both call into these modules.
"""

from core.system import decline_openvino_telemetry

decline_openvino_telemetry()  # before any module imports OpenVINO (see there why)
