"""Where an InstantID model keeps what diffusers' pipeline folder does not: the face
adapter's weights, and the link to the face encoder its adapter was trained on.

A published InstantID model is a diffusers folder (`model_index.json`, `unet/`,
`controlnet/` = IdentityNet, `vae/`, both text encoders and tokenizers, `scheduler/`)
plus `ip_adapter/ip-adapter.safetensors`: InstantID's `ip-adapter.bin` converted to
safetensors (we never unpickle), keys `image_proj.*` and `ip_adapter.*`. Its manifest
links the encoder as the component `face_encoder` (e.g. `arcface-antelopev2@1`), and
optionally a TAESD-XL `tiny_decoder` for previews.
"""

IP_ADAPTER_FOLDER = "ip_adapter"
IP_ADAPTER_FILE = "ip-adapter.safetensors"
FACE_ENCODER = "face_encoder"
"""Manifest component role of the ArcFace-family ONNX encoder."""
ARCFACE_FILE = "arcface.onnx"
ARCFACE_CLASS = "ArcFaceONNX"
"""`pipeline_class` of a published face encoder (it has no diffusers class)."""
EMBEDDING_DIM = 512
"""ArcFace (antelopev2 glintr100) embedding size, which InstantID's Resampler takes."""
