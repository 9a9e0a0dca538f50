"""Every string marked for translation has its Korean: makemessages, run on a copy of each app,
leaves no entry untranslated or fuzzy, and each compiled catalogue is the one its .po makes.
Needs GNU gettext (`make test` installs it); where it is missing the test fails and says so."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ("desk", "execution", "market", "picks", "trading")
CATALOGUE = Path("locale/ko/LC_MESSAGES")


def gettext_tools():
    if shutil.which("msgattrib") is None or shutil.which("msgfmt") is None:
        pytest.fail(
            "GNU gettext is missing: `make test` installs it (scripts/with-services.sh with "
            "AEGIS_TEST_TOOLS=1, as root)"
        )


def entries(po: Path, *flags: str) -> str:
    """msgattrib's selection of `po`, without the header."""
    out = subprocess.run(
        ["msgattrib", *flags, "--no-obsolete", "--no-wrap", str(po)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(
        block for block in out.split("\n\n") if block.strip() and 'msgid ""\nmsgstr ""' not in block
    )


@pytest.mark.parametrize("app", APPS)
def test_makemessages_leaves_nothing_untranslated(app, tmp_path):
    gettext_tools()
    copy = tmp_path / app
    shutil.copytree(ROOT / app, copy, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    # -P: the copy's own modules must not shadow the standard library's (execution/selectors.py).
    subprocess.run(
        [sys.executable, "-P", "-m", "django", "makemessages", "-l", "ko", "--no-location"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
    )
    po = copy / CATALOGUE / "django.po"
    assert entries(po, "--untranslated") == ""
    assert entries(po, "--only-fuzzy") == ""


@pytest.mark.parametrize("app", APPS)
def test_the_compiled_catalogue_is_its_po(app, tmp_path):
    gettext_tools()
    catalogue = ROOT / app / CATALOGUE
    subprocess.run(
        ["msgfmt", "--check", "-o", str(tmp_path / "django.mo"), str(catalogue / "django.po")],
        check=True,
    )
    assert (tmp_path / "django.mo").read_bytes() == (catalogue / "django.mo").read_bytes()
