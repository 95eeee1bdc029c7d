"""Build the calico-exporter container image; ``make image`` runs ``build``.

``python tools/image.py build [--tag T] [--base IMAGE] [--tool buildah|docker]``:

1. *Wheels, on the host.* The project's wheel is built from a copy of its sources (the work tree
   stays clean), and the wheels of every runtime dependency, and of pip itself, are downloaded
   for CPython 3.11 on this machine's architecture (``pip download --only-binary :all:``) into
   ``build/image/wheels``. pip's cache keeps a second run offline.
2. *The image build fetches nothing*: the Dockerfile installs those wheels into a virtual
   environment with ``--no-index``, from ``build/image`` as the build context.

``--tool``: buildah (``--isolation chroot``, which needs no daemon) or docker, whichever is
installed, buildah first. ``--base`` is any Debian-based image with Python 3.11 at
``/usr/bin/python3`` or ``/usr/local/bin/python3``; the default is the Dockerfile's
(``python:3.11-slim``). The previous image of the same tag is removed once replaced.

``python tools/image.py base [--release bookworm]`` prints the name of a local base image, made
when missing: ``debootstrap --variant=minbase RELEASE`` with Debian's ``python3``, stripped of
documentation, locales and apt's lists, imported as
``localhost/calico-exporter-base:RELEASE-DIGEST`` (the digest covers how the root is made). The
root filesystem is cached as a tarball under ``~/.cache/calico-exporter/base/`` (or
``$XDG_CACHE_HOME``), keyed by the release and that digest, so only the first run on a machine
pays for debootstrap. This is how the tests build the image where no registry is reachable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = ROOT / "build" / "image"
PYTHON_VERSION = "3.11"
BASE_NAME = "localhost/calico-exporter-base"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
STRIP = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
         "usr/share/info", "usr/share/locale", "var/log",
         f"usr/lib/{platform.machine()}-linux-gnu/gconv")
"""Parts of the debootstrapped root nothing at run time reads (emptied, not removed): apt's
caches and lists, documentation, translations, logs, and glibc's iconv modules (Python's codecs
are its own)."""


class ImageError(Exception):
    """A step failed; the message says which and why."""


def version() -> str:
    sys.path.insert(0, str(ROOT))
    from exporter import __version__

    return __version__


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "calico-exporter" / "base"


def _call(*argv: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool (found on PATH) with fixed arguments; its output captured when ``quiet``."""
    exe = shutil.which(argv[0])
    if exe is None:
        raise ImageError(f"{argv[0]} is not installed")
    return subprocess.run([exe, *argv[1:]], text=True, check=False,  # noqa: S603
                          capture_output=quiet)


def _run(*argv: str, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command (its output captured when ``quiet``); ImageError when it fails."""
    result = _call(*argv, quiet=quiet)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()[-2000:] if quiet else ""
        raise ImageError(f"{' '.join(argv[:3])} ... failed with exit code "
                         f"{result.returncode}{': ' + detail if detail else ''}")
    return result


def pick_tool(wanted: str | None) -> str:
    for tool in ([wanted] if wanted else ["buildah", "docker"]):
        if shutil.which(tool):
            return tool
    raise ImageError(f"{wanted or 'buildah or docker'} is not installed")


# --------------------------------------------------------------------------------------------
# Wheels


def wheels(out: Path) -> list[Path]:
    """The project's wheel and every runtime dependency's, plus pip's, for CPython 3.11."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory(prefix="calico-exporter-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(ROOT / "exporter", src / "exporter",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _run(*pip, "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(src), quiet=True)
    (project,) = out.glob("calico_exporter-*.whl")
    machine = platform.machine()
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in (17, 28, 34, 36)]
    platforms += [f"manylinux2014_{machine}", f"manylinux1_{machine}", f"linux_{machine}"]
    args = ["download", "-q", "--only-binary", ":all:", "--python-version", PYTHON_VERSION,
            "--implementation", "cp", "--abi", "cp" + PYTHON_VERSION.replace(".", ""),
            "--abi", "abi3", "--abi", "none", "--dest", str(out)]
    for tag in platforms:
        args += ["--platform", tag]
    _run(*pip, *args, str(project), "pip", quiet=True)
    return sorted(out.glob("*.whl"))


# --------------------------------------------------------------------------------------------
# The local base image


def _image_id(tool: str, name: str) -> str | None:
    if tool == "buildah":
        result = _call("buildah", "images", "--json", name)
        if result.returncode != 0 or not result.stdout.strip():
            return None
        found = json.loads(result.stdout)
        return str(found[0]["id"]) if found else None
    result = _call("docker", "image", "inspect", "--format", "{{.Id}}", name)
    return result.stdout.strip() or None if result.returncode == 0 else None


def recipe(release: str) -> str:
    """``release`` and a digest of how its root filesystem is made: the cache key."""
    digest = hashlib.sha256(repr((release, "minbase", "python3", STRIP)).encode()).hexdigest()
    return f"{release}-{digest[:10]}"


def rootfs_tarball(release: str) -> Path:
    """The cached root filesystem of ``release`` with python3, made with debootstrap when
    missing (needs root and the debootstrap package); older recipes of it are removed."""
    key = recipe(release)
    tarball = cache_dir() / f"{key}-rootfs.tar"
    if tarball.exists():
        return tarball
    for stale in cache_dir().glob(f"{release}-*-rootfs.tar"):
        stale.unlink()
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (make deb-deps installs it)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="calico-exporter-rootfs-",
                                     dir=tarball.parent) as tmp:
        root = Path(tmp) / "root"
        _run("debootstrap", "--variant=minbase", "--include=python3", release, str(root),
             MIRROR, quiet=True)
        for part in STRIP:
            target = root / part
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        partial = Path(tmp) / "rootfs.tar"
        _run("tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), ".")
        partial.rename(tarball)
    return tarball


def base(release: str, tool: str) -> str:
    """The name of the local base image of ``release``, imported from the cached tarball (made
    first when missing) unless the image store already has it."""
    name = f"{BASE_NAME}:{recipe(release)}"
    if _image_id(tool, name) is not None:
        return name
    tarball = rootfs_tarball(release)
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    if tool == "docker":
        _run("docker", "import", "--change", f"ENV {path}", str(tarball), name, quiet=True)
        return name
    container = _run("buildah", "from", "scratch", quiet=True).stdout.strip()
    try:
        _run("buildah", "add", "--quiet", container, str(tarball), "/", quiet=True)
        _run("buildah", "config", "--env", path, "--cmd", "/usr/bin/python3", container,
             quiet=True)
        _run("buildah", "commit", "--quiet", container, name, quiet=True)
    finally:
        _call("buildah", "rm", container)
    return name


# --------------------------------------------------------------------------------------------
# The image


def build(tag: str, *, base_image: str | None, tool: str) -> str:
    """Build the image as ``tag`` from freshly made wheels; returns its ID."""
    wheels(CONTEXT / "wheels")
    old = _image_id(tool, tag)
    argv = [tool, "build" if tool == "docker" else "bud", "--file", str(ROOT / "Dockerfile"),
            "--tag", tag]
    if tool == "buildah":
        argv += ["--isolation", "chroot"]
    if base_image:
        argv += ["--build-arg", f"BASE_IMAGE={base_image}"]
    _run(*argv, str(CONTEXT))
    new = _image_id(tool, tag)
    if new is None:
        raise ImageError(f"{tool} reported success but there is no image {tag}")
    if old is not None and old != new:
        _call(tool, "rmi", old)
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the image")
    b.add_argument("--tag", default=f"calico-exporter:{version()}")
    b.add_argument("--base", default=os.environ.get("BASE_IMAGE") or None,
                   help="base image (default: the Dockerfile's python:3.11-slim)")
    b.add_argument("--tool", choices=("buildah", "docker"), default=None)
    w = sub.add_parser("wheels", help="only make the wheels")
    w.add_argument("--out", type=Path, default=CONTEXT / "wheels")
    s = sub.add_parser("base", help="make the local Debian base image, print its name")
    s.add_argument("--release", default="bookworm")
    s.add_argument("--tool", choices=("buildah", "docker"), default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "wheels":
            for path in wheels(args.out):
                sys.stdout.write(f"{path}\n")
        elif args.command == "base":
            sys.stdout.write(base(args.release, pick_tool(args.tool)) + "\n")
        else:
            image_id = build(args.tag, base_image=args.base, tool=pick_tool(args.tool))
            sys.stdout.write(f"built {args.tag} ({image_id[:12]})\n")
    except ImageError as exc:
        sys.stderr.write(f"image: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
