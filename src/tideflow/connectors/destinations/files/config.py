"""Config model of the ``files`` destination: Parquet or JSONL files per table."""

from __future__ import annotations

from typing import Literal

from tideflow.connectors.config import ConnectorConfig, setting
from tideflow.connectors.registry import ConnectorSpec, register


class FilesDestinationConfig(ConnectorConfig):
    path: str = setting(
        key="path.user.defined",
        display_name="Path or URL",
        description="Local directory or fsspec URL (file://, s3://, ...) to write files under.",
    )
    format: Literal["parquet", "jsonl"] = setting(
        "parquet",
        key="format.user.defined",
        display_name="Format",
        description="File format: parquet or jsonl (one Debezium envelope per line).",
    )
    compression: Literal["zstd", "snappy", "gzip", "none"] = setting(
        "zstd",
        key="file.compression.type",
        display_name="Compression",
        description="Compression codec for Parquet files (gzip for JSONL when set).",
    )
    file_name_prefix: str = setting(
        "",
        key="file.name.prefix",
        display_name="File name prefix",
        description="Prefix added to every file name.",
    )


register(
    ConnectorSpec(
        code="files",
        kind="destination",
        display_name="Files (Parquet / JSONL)",
        config_model=FilesDestinationConfig,
        implementation="tideflow.connectors.destinations.files.destination:FilesDestination",
    )
)
