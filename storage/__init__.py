"""Where image bytes live (a local directory or S3), fetching inputs, decoding and encoding.

Imports only `jobs` of darkroom's packages. boto3 loads only when an `s3://` location
or input is used (see `storage.location`), so importing this package stays cheap.
"""

from storage.base import ObjectNotFound, Storage, check_key, uri_for
from storage.images import ALLOWED_FORMATS, CONTENT_TYPES, decode_image, encode_image
from storage.local import LocalStorage
from storage.location import open_location, read_uri

__all__ = [
    "ALLOWED_FORMATS",
    "CONTENT_TYPES",
    "LocalStorage",
    "ObjectNotFound",
    "Storage",
    "check_key",
    "decode_image",
    "encode_image",
    "open_location",
    "read_uri",
    "uri_for",
]
