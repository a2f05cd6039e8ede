"""Docs are generated or checked: completions and man page match the app; the exit table agrees."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mutexctl.cli.exit_codes import EXIT_STATUS_TABLE

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_man_page_and_completions_match_the_app() -> None:
    done = subprocess.run([sys.executable, "-m", "mutexctl.cli.gendocs", "--check"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_readme_exit_table_is_the_code_s_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Exit status", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (?!exit |---)(.+?) \| (.+?) \|$", section, flags=re.MULTILINE)
    assert rows == list(EXIT_STATUS_TABLE)


def test_the_man_page_exit_section_is_the_code_s_table() -> None:
    man = (ROOT / "man" / "mutexctl.1").read_text()
    section = man.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    rows = re.findall(r"^\.TP\n\\fB(.+?)\\fR\n(.+)$", section, flags=re.MULTILINE)
    unroff = [(code.replace("\\-", "-"), meaning.replace("\\-", "-")) for code, meaning in rows]
    assert unroff == list(EXIT_STATUS_TABLE)
    for heading in ("ENVIRONMENT", "FILES", "EXAMPLES"):
        assert f".SH {heading}" in man


def test_the_readme_starts_with_the_two_commands_a_new_user_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", readme)[:2]
    assert "mutexctl acquire demo --" in commands[0] and "pip install ." in commands[0]
    assert "pytest" in commands[1] and ".[test]" in commands[1]


def test_the_readme_s_node_P_and_V_are_the_code_the_interop_suite_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Sharing mutexes with other services", 1)[1].split("\n## ", 1)[0]
    [js] = re.findall(r"```js\n(.*?)```", section, flags=re.DOTALL)
    assert js.strip() in (ROOT / "tests" / "interop" / "service.js").read_text()


def test_the_readme_and_the_man_page_give_the_same_document_contract() -> None:
    from mutexctl.cli.gendocs import SHARING

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Sharing mutexes with other services", 1)[1].split("\n## ", 1)[0]
    fields = re.findall(r"^\| `(\w+)` \| (\w+) \|", section, flags=re.MULTILINE)
    assert [name for name, _ in fields] == [name for name, _ in SHARING]
    man = (ROOT / "man" / "mutexctl.1").read_text()
    assert ".SH SHARING MUTEXES WITH OTHER SERVICES" in man
    for words in ("takenAt + timeout", "never judged expired", "unique index"):
        assert words in section and words in man.replace("\\-", "-")


def test_pip_install_puts_the_man_page_and_the_completions_where_man_and_the_shells_look(tmp_path: Path) -> None:
    import shutil
    import zipfile

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("mutexctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for installed in ("share/man/man1/mutexctl.1", "share/bash-completion/completions/mutexctl",
                      "share/zsh/site-functions/_mutexctl", "share/fish/vendor_completions.d/mutexctl.fish"):
        assert any(name.endswith(".data/data/" + installed) for name in names), installed
    # A wheel's .data/data/ entries are what pip installs under the prefix (the wheel format says so);
    # unpacked by hand here, since installing into another prefix would uninstall this venv's mutexctl.
    prefix = tmp_path / "prefix"
    with zipfile.ZipFile(wheel) as archive:
        for name in names:
            if ".data/data/" in name:
                target = prefix / name.split(".data/data/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    assert (prefix / "share" / "man" / "man1" / "mutexctl.1").read_text() == (ROOT / "man" / "mutexctl.1").read_text()
    if shutil.which("man"):
        page = subprocess.run(["man", "-M", str(prefix / "share" / "man"), "mutexctl"], capture_output=True,
                              text=True, timeout=60, env={"MANPAGER": "cat", "PATH": "/usr/bin:/bin"})
        assert page.returncode == 0 and "named leases" in page.stdout


def test_the_readme_s_editable_install_puts_the_man_page_and_completions_in_the_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", "-e", str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for installed, source in (("share/man/man1/mutexctl.1", "man/mutexctl.1"),
                              ("share/bash-completion/completions/mutexctl", "completions/bash/mutexctl"),
                              ("share/zsh/site-functions/_mutexctl", "completions/zsh/_mutexctl"),
                              ("share/fish/vendor_completions.d/mutexctl.fish", "completions/fish/mutexctl.fish")):
        assert (venv / installed).read_text() == (ROOT / source).read_text(), installed
