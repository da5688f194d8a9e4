from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ReadSpansRequest(_message.Message):
    __slots__ = ("start_key_ulid", "batch_size")
    START_KEY_ULID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    start_key_ulid: bytes
    batch_size: int
    def __init__(self, start_key_ulid: _Optional[bytes] = ..., batch_size: _Optional[int] = ...) -> None: ...

class ReadSpansResponse(_message.Message):
    __slots__ = ("key_ulid", "span_bytes", "resource_bytes")
    KEY_ULID_FIELD_NUMBER: _ClassVar[int]
    SPAN_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    key_ulid: bytes
    span_bytes: bytes
    resource_bytes: bytes
    def __init__(self, key_ulid: _Optional[bytes] = ..., span_bytes: _Optional[bytes] = ..., resource_bytes: _Optional[bytes] = ...) -> None: ...

class ValidateApiKeyRequest(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class ValidateApiKeyResponse(_message.Message):
    __slots__ = ("is_valid",)
    IS_VALID_FIELD_NUMBER: _ClassVar[int]
    is_valid: bool
    def __init__(self, is_valid: _Optional[bool] = ...) -> None: ...
