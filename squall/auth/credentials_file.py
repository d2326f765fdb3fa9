"""The administrator's credentials, where the ``squall`` CLI (and the AWS tools) find them.

``<data dir>/credentials``, mode 0600, in the AWS shared-credentials format: a ``[default]``
profile, so ``AWS_SHARED_CREDENTIALS_FILE=<data dir>/credentials`` works with boto3 and the
AWS CLI as it is. Written by ``squall server`` on its first start (and again if the key in
it was deleted); read by the CLI.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

FILE_NAME = "credentials"


def path_of(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def read(data_dir: Path) -> tuple[str, str] | None:
    """(access key id, secret) from the file, or None when it is missing or unreadable."""
    parser = configparser.ConfigParser()
    try:
        with open(path_of(data_dir)) as f:
            parser.read_file(f)
        section = parser["default"]
        return section["aws_access_key_id"], section["aws_secret_access_key"]
    except (OSError, KeyError, configparser.Error):
        return None


def write(data_dir: Path, key_id: str, secret: str, region: str) -> Path:
    path = path_of(data_dir)
    text = (
        "# Squall's administrator access key (allowed everything). Written by `squall server`;\n"
        "# keep it secret. `squall credentials` prints it as environment variables.\n"
        "[default]\n"
        f"aws_access_key_id = {key_id}\n"
        f"aws_secret_access_key = {secret}\n"
        f"region = {region}\n"
    )
    temp = path.with_name(path.name + ".new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(temp, 0o600)
    os.replace(temp, path)
    return path
