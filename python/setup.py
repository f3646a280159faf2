"""Bundles libomendb.so into the package: the one from OMENDB_LIBRARY when set, else the one
`cargo build --release` makes in this checkout (pip builds in the source tree)."""
import os
import pathlib
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = pathlib.Path(__file__).resolve().parent.parent


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        library = os.environ.get("OMENDB_LIBRARY")
        if not library:
            subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
            library = ROOT / "target" / "release" / "libomendb.so"
        shutil.copyfile(library, pathlib.Path(self.build_lib) / "omendb" / "libomendb.so")


class BinaryDistribution(Distribution):
    """The wheel carries a native library, so it is tied to a platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
