"""The wheel installs one package, `sagac`, and imports the same way as the editable install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_one_package_with_schema(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("sagac-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("sagac-")}
    assert top == {"sagac"}, top
    assert "sagac/schemas/saga.schema.json" in names
    assert "sagac/compiler/pipeline.py" in names
    assert "sagac/errors.py" in names

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
        check=True,
        capture_output=True,
    )
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import sagac, sagac.compiler.schema as s;"
        "assert sagac.__file__.startswith(sys.argv[1]), sagac.__file__;"
        "assert s.saga_schema()['title'];"
        "import importlib.util as u; assert u.find_spec('compiler') is None;"
        "print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(site)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_editable_install_maps_root_folders() -> None:
    import sagac.compiler
    import sagac.runtime

    assert Path(sagac.compiler.__file__).parent == ROOT / "compiler"
    assert Path(sagac.runtime.__file__).parent == ROOT / "runtime"


def test_every_public_name_resolves() -> None:
    import sagac

    for name in sagac.__all__:
        assert getattr(sagac, name) is not None, name
