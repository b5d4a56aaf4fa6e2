"""Model export: Hugging Face (optimum) and Bergamot models -> ONNX fp32/fp16/int8.

Run as ``python -m export ...``; see ``export.hf`` for the Hugging Face path.
"""
