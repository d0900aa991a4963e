"""tools/build_demo_corpus.py on a fake help package built with `dpkg-deb -b`: documents, quality
split, a byte-identical rebuild, and the missing-package error (exit 2, the apt-get line)."""
from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "build_demo_corpus.py"
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")

PAGE = ("<html><body><div id='DisplayArea'><h1>{title}</h1><p>{body}</p>"
        "<p>An untranslated English sentence stays out of the Korean document.</p></div></body></html>")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("build_demo_corpus", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_package(tool, tmp_path, monkeypatch):
    """A one-package PACKAGES table and its .deb: a guide page, a reference page, a stub page."""
    package = tool.HelpPackage("libreoffice-help-ko", "ko", "usr/share/libreoffice/help/ko", "MPL-2.0", guides=())
    root = tmp_path / "pkg" / package.root / "text" / "swriter"
    body = "문서를 저장하려면 파일 메뉴에서 저장을 선택하십시오. " * 6
    for rel, title in (("guide/save.html", "문서 저장하기"), ("01/save_menu.html", "저장 명령"), ("01/stub.html", "짧음")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(PAGE.format(title=title, body=body if rel != "01/stub.html" else "짧은 쪽"),
                                encoding="utf-8")
    (tmp_path / "pkg" / "DEBIAN").mkdir()
    (tmp_path / "pkg" / "DEBIAN" / "control").write_text(
        "Package: libreoffice-help-ko\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: fake help\n")
    debs = tmp_path / "debs"
    debs.mkdir()
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tmp_path / "pkg"),
                    str(debs / "libreoffice-help-ko_1.0_all.deb")], check=True, capture_output=True)
    monkeypatch.setattr(tool, "PACKAGES", (package,))
    return debs


def _read(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@needs_dpkg
def test_builds_one_document_per_page_split_by_quality_reproducibly(tool, fake_package, tmp_path):
    assert tool.main(["--debs", str(fake_package), "--output", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ko_guide.jsonl.gz", "ko_reference.jsonl.gz"]
    guide, = _read(tmp_path / "out" / "ko_guide.jsonl.gz")
    reference, = _read(tmp_path / "out" / "ko_reference.jsonl.gz")  # the stub page is too short to keep
    assert guide["id"] == "libreoffice-help-ko/text/swriter/guide/save.html"
    assert (guide["source"], guide["licence"], guide["lang"], guide["quality"]) == (
        "libreoffice-help-ko", "MPL-2.0", "ko", "guide")
    assert guide["text"].startswith("문서 저장하기\n문서를 저장하려면") and "English" not in guide["text"]
    assert reference["quality"] == "reference" and reference["id"].endswith("01/save_menu.html")
    first = (tmp_path / "out" / "ko_guide.jsonl.gz").read_bytes()
    assert tool.main(["--debs", str(fake_package), "--output", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "ko_guide.jsonl.gz").read_bytes() == first


def test_missing_package_names_the_apt_get_line(tool, tmp_path, capsys):
    assert tool.main(["--debs", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no {tool.PACKAGES[0].name}_*.deb" in err and f"apt-get download {tool.PACKAGES[0].name}" in err
    assert not (tmp_path / "out").exists()


def test_folders_and_path_skips_split_one_package_by_licence(tool, tmp_path):
    # gnome-devel-docs: one package, manuals under two licences; the demos' license.page left out
    page = ('<page xmlns="http://projectmallard.org/1.0/"><title>{}</title><p>'
            + "코드를 작성하기 전에 새 프로젝트를 설정해야 합니다. " * 5 + "</p></page>")
    root = tmp_path / "usr/share/help/ko"
    for rel in ("gnome-devel-demos/button.py.page", "gnome-devel-demos/license.page",
                "programming-guidelines/threading.page", "optimization-guide/massif.page"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(page.format(rel), encoding="utf-8")
    cc, gfdl = (p for p in tool.PACKAGES if p.name == "gnome-devel-docs")
    assert [d["id"] for d in tool.package_documents(cc, tmp_path)] == [
        "gnome-devel-docs/gnome-devel-demos/button.py.page", "gnome-devel-docs/programming-guidelines/threading.page"]
    doc, = tool.package_documents(gfdl, tmp_path)
    assert (doc["id"], doc["licence"], doc["quality"]) == (
        "gnome-devel-docs/optimization-guide/massif.page", "GFDL-1.1-or-later", "guide")


def test_quality_rule(tool):
    libreoffice, gimp, gnome = (next(p for p in tool.PACKAGES if p.name == n)
                                for n in ("libreoffice-help-en-us", "gimp-help-en", "gnome-user-docs"))
    assert tool.page_quality(libreoffice, "text/scalc/guide/cellstyle.html") == "guide"
    assert tool.page_quality(libreoffice, "text/scalc/01/04060101.html") == "reference"
    assert tool.page_quality(gimp, "gimp-tutorial-quickie.html") == "guide"
    assert tool.page_quality(gimp, "gimp-filter-blur.html") == "reference"
    assert tool.page_quality(gnome, "gnome-help/bluetooth.page") == "guide"
    devel = next(p for p in tool.PACKAGES if p.name == "gnome-devel-docs")
    assert tool.page_quality(devel, "gnome-devel-demos/button.py.page") == "guide"
