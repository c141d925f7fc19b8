"""A PEP 517 build backend in the standard library only, so `pip install ./python` works offline.

pip builds in an isolated environment and fetches the backend named in pyproject.toml first;
with no package index in reach, setuptools (which also needs `wheel`) cannot be fetched. This
backend has no requirements: it writes a pure-Python wheel of the `bettertest` package with
zipfile, taking the name and version from pyproject.toml. It supports regular and editable
(`pip install -e`) installs and source distributions.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

ConfigSettings = dict[str, Any] | None

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "bettertest"
# Fixed timestamps make every build of the same tree byte-identical.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]


def _project() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _dist_name() -> str:
    project = _project()
    return f"{project['name']}-{project['version']}"


def _metadata() -> str:
    project = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project['description']}",
        f"Requires-Python: {project['requires-python']}",
        "Description-Content-Type: text/markdown",
    ]
    readme = (ROOT / str(project["readme"])).read_text(encoding="utf-8")
    return "\n".join(lines) + "\n\n" + readme


def _dist_info_files() -> dict[str, bytes]:
    return {
        "METADATA": _metadata().encode(),
        "WHEEL": b"Wheel-Version: 1.0\nGenerator: bettertest_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }


def _package_files() -> dict[str, bytes]:
    files = {}
    for path in sorted((ROOT / PACKAGE).iterdir()):
        if path.suffix == ".py" or path.name == "py.typed":
            files[f"{PACKAGE}/{path.name}"] = path.read_bytes()
    return files


def _write_wheel(wheel_directory: str, files: dict[str, bytes]) -> str:
    dist = _dist_name()
    dist_info = f"{dist}.dist-info"
    files = dict(files)
    for name, content in _dist_info_files().items():
        files[f"{dist_info}/{name}"] = content
    record = io.StringIO()
    for name, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record.write(f"{name},sha256={digest},{len(content)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    files[f"{dist_info}/RECORD"] = record.getvalue().encode()
    wheel_name = f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, _ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return wheel_name


def _prepare_metadata(metadata_directory: str) -> str:
    dist_info = f"{_dist_name()}.dist-info"
    os.makedirs(os.path.join(metadata_directory, dist_info), exist_ok=True)
    for name, content in _dist_info_files().items():
        with open(os.path.join(metadata_directory, dist_info, name), "wb") as f:
            f.write(content)
    return dist_info


def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> list[str]:
    return []


def get_requires_for_build_editable(config_settings: ConfigSettings = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: ConfigSettings = None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: ConfigSettings = None) -> str:
    return _prepare_metadata(metadata_directory)


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: ConfigSettings = None) -> str:
    return _prepare_metadata(metadata_directory)


def build_wheel(wheel_directory: str, config_settings: ConfigSettings = None, metadata_directory: str | None = None) -> str:
    return _write_wheel(wheel_directory, _package_files())


def build_editable(wheel_directory: str, config_settings: ConfigSettings = None, metadata_directory: str | None = None) -> str:
    # A .pth line puts the source folder on sys.path: edits take effect without reinstalling.
    return _write_wheel(wheel_directory, {f"_{PACKAGE}_editable.pth": f"{ROOT}\n".encode()})


def build_sdist(sdist_directory: str, config_settings: ConfigSettings = None) -> str:
    dist = _dist_name()
    names = ["pyproject.toml", _project()["readme"], "_build/bettertest_build.py", *_package_files()]
    sdist_name = f"{dist}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, sdist_name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        pkg_info = _metadata().encode()
        info = tarfile.TarInfo(f"{dist}/PKG-INFO")
        info.size, info.mode = len(pkg_info), 0o644
        tar.addfile(info, io.BytesIO(pkg_info))
        for name in names:
            content = (ROOT / name).read_bytes()
            info = tarfile.TarInfo(f"{dist}/{name}")
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return sdist_name
