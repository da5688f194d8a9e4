"""The wheel the Docker image installs ships what the code reads at run time.

docker/Dockerfile builds the gateway with ``pip wheel .`` from pyproject.toml,
README.md, gateway/ and services/, then installs that wheel: a regular install,
where only the files pyproject.toml declares come along. The development venv
is an editable install that reads the source tree, so a file missing from the
wheel (the status page template) would only show in the image. This builds
the same wheel, without Docker and without the network, and uses it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_image_wheel(tmp_path: Path) -> Path:
    # Only what the builder stage copies: no .git, so setuptools can't pick
    # up data files through version control either.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("gateway", "services"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--wheel-dir", str(out), "."],
        cwd=src, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return next(out.glob("*.whl"))


def test_the_images_wheel_ships_the_status_page_template_and_renders_the_page(tmp_path: Path):
    wheel = build_image_wheel(tmp_path)
    shipped = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("gateway/**/templates/*") if p.is_file()}
    assert "gateway/ops/templates/status.html" in templates
    assert templates <= shipped, f"missing from the wheel: {sorted(templates - shipped)}"

    # Installed from the wheel alone (it comes first on the path; the editable
    # install's finder comes last), the status page renders.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import gateway, sys; from gateway.ops.status_page import render_status;"
            "print(gateway.__file__); sys.stdout.write(render_status({'routes': []}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site)}, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    where, page = done.stdout.split("\n", 1)
    assert Path(where).is_relative_to(site), where
    assert page.startswith("<!DOCTYPE html>") and "No routes in the table." in page
