"""Generates the gRPC stubs from Tessera's protos when the package is built.

The protos live once, in the repository's `proto/` (two levels up); the
server, the Rust client and this package all compile that one copy, so no
message is written twice. Every run of this file (metadata, wheel, editable
install) first runs grpcio-tools' protoc into `src/tessera_client/_proto/`
(not in git), and makes the stubs' imports relative so that they need no
top-level `tessera` package.
"""

import pathlib
import re
import shutil
import tempfile

from setuptools import setup

HERE = pathlib.Path(__file__).resolve().parent
PROTOS = HERE.parents[1] / "proto"
FILES = ["tessera/v1/authority.proto", "tessera/v1/credentials.proto"]
OUT = HERE / "src" / "tessera_client" / "_proto"


def generate() -> None:
    import grpc_tools
    from grpc_tools import protoc

    if not all((PROTOS / name).is_file() for name in FILES):
        raise SystemExit(
            f"tessera-client: the protos are not at {PROTOS}: build this package from "
            "a checkout of the Tessera repository (pip install ./clients/python)"
        )
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTOS}", f"-I{well_known}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *FILES]
        if protoc.main(args) != 0:
            raise SystemExit(f"tessera-client: protoc failed on {PROTOS}")
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir(parents=True)
        for path in sorted((pathlib.Path(tmp) / "tessera" / "v1").iterdir()):
            text = re.sub(r"^from tessera\.v1 import ", "from . import ", path.read_text(), flags=re.M)
            (OUT / path.name).write_text(text)
    (OUT / "__init__.py").write_text('"""Generated at build time from proto/tessera/v1 (see setup.py)."""\n')


generate()
setup()
