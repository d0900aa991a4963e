"""Rebuild the demo's help-pages corpus (megatron_kanana/data/corpus/help/) from Debian packages.

    mkdir -p /tmp/debs && cd /tmp/debs && apt-get download libreoffice-help-en-us gimp-help-en \\
        libreoffice-help-ko gimp-help-ko gnome-user-docs gnome-devel-docs gnome-terminal-data \\
        gnome-boxes gnome-calculator gnome-sudoku cheese-common gnome-dictionary gnome-mines \\
        gnome-mahjongg lightsoff hitori debian-faq-ko installation-guide-amd64
    python tools/build_demo_corpus.py --debs /tmp/debs

Each package is unpacked with `dpkg-deb -x` into a temporary folder; every help page
becomes one JSON document (`text`, `source`, `licence`, `lang`, `quality`) whose text is
the page's prose paragraphs in the package's language (megatron_kanana/data/help_pages.py).
Pages are split by source-level quality (`page_quality`): how-to guides and tutorials are
"guide", the one-command-per-page reference is "reference"; the output is one gzip JSONL
file per language and quality, documents sorted by package and path, written
byte-for-byte reproducibly (no gzip timestamp). A missing package is named with the
`apt-get download` line that fetches it (exit 2).
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from megatron_kanana.data.help_pages import page_paragraphs  # noqa: E402

OUT_DIR = REPO / "megatron_kanana" / "data" / "corpus" / "help"
# Pages shorter than this (after extraction) are index stubs or a bare title. A Hangul
# syllable carries about two Latin letters' worth, so Korean pages may be half as long.
MIN_CHARS = {"en": 200, "ko": 100}


@dataclass(frozen=True)
class HelpPackage:
    name: str                   # Debian package
    lang: str                   # "ko" or "en"
    root: str                   # folder of its pages inside the package
    licence: str                # SPDX id, from its usr/share/doc/<package>/copyright (GIMP: gimp-help-common's)
    pattern: str = "*.html"     # its pages under root
    skip: tuple[str, ...] = ()  # page name or path prefixes left out (a licence's own text)
    folders: tuple[str, ...] = ()  # root's subfolders read (a package's manuals of one licence); () all
    guides: tuple[str, ...] | None = None  # page name prefixes that are guides; None: every page is one


# GIMP manual chapters written as long-form prose: introduction, concepts, "getting unstuck",
# using GIMP, tutorials, painting and colour concepts. The rest is dialog/menu/tool/filter reference.
GIMP_GUIDES = ("gimp-introduction", "gimp-concepts", "gimp-stuck", "gimp-using", "gimp-tutorial",
               "gimp-fire-up", "gimp-imaging", "gimp-images", "gimp-painting", "gimp-colors")
GIMP_LICENCE = "GFDL-1.2-or-later"
GNOME_HELP_KO = "usr/share/help/ko"
# GNOME application help whose copyright file gives the help a licence of its own (CC-BY-SA-3.0),
# the one the pages state; applications whose copyright file and pages disagree are left out (README).
GNOME_APPS_CC_BY_SA = ("gnome-boxes", "gnome-calculator", "gnome-sudoku", "cheese-common", "gnome-dictionary",
                       "gnome-mines", "gnome-mahjongg", "lightsoff", "hitori")
GNOME_LICENCE_PAGE = "license.page"  # a summary of the CC licence the manual is under
PACKAGES = (
    # English: LibreOffice and GIMP help, 5.5 MB of prose, more than the demo needs.
    HelpPackage("libreoffice-help-en-us", "en", "usr/share/libreoffice/help/en-US", "MPL-2.0", guides=()),
    HelpPackage("gimp-help-en", "en", "usr/share/gimp/2.0/help/en", GIMP_LICENCE, skip=("gfdl",),
                guides=GIMP_GUIDES),
    # Korean: the same two (the GIMP translation is mostly unfinished), then the GNOME help and
    # two Debian manuals, whose pages are all long-form guides: 3.8 MB, 3.2 MB after the demo's curation.
    HelpPackage("libreoffice-help-ko", "ko", "usr/share/libreoffice/help/ko", "MPL-2.0", guides=()),
    HelpPackage("gimp-help-ko", "ko", "usr/share/gimp/2.0/help/ko", GIMP_LICENCE, skip=("gfdl",),
                guides=GIMP_GUIDES),
    HelpPackage("gnome-user-docs", "ko", GNOME_HELP_KO, "CC-BY-SA-3.0", pattern="*.page"),
    # gnome-devel-docs: the developer tutorials, platform overview and programming guidelines
    # (CC-BY-SA-3.0), the optimization guide (GFDL); the accessibility guide has no Korean.
    HelpPackage("gnome-devel-docs", "ko", GNOME_HELP_KO, "CC-BY-SA-3.0", pattern="*.page",
                skip=(f"gnome-devel-demos/{GNOME_LICENCE_PAGE}",),
                folders=("gnome-devel-demos", "platform-overview", "programming-guidelines")),
    HelpPackage("gnome-devel-docs", "ko", GNOME_HELP_KO, "GFDL-1.1-or-later", pattern="*.page",
                folders=("optimization-guide",)),
    # copyright: GPL-3+ for the whole package; the pages: CC-BY-SA-3.0 or GPL version 3. Both allow GPL-3.0.
    HelpPackage("gnome-terminal-data", "ko", GNOME_HELP_KO, "GPL-3.0-only", pattern="*.page"),
    *(HelpPackage(name, "ko", GNOME_HELP_KO, "CC-BY-SA-3.0", pattern="*.page", skip=(GNOME_LICENCE_PAGE,))
      for name in GNOME_APPS_CC_BY_SA),
    HelpPackage("debian-faq-ko", "ko", "usr/share/doc/debian/FAQ/ko", "Debian-FAQ-permission-notice",
                pattern="*.ko.html"),
    HelpPackage("installation-guide-amd64", "ko", "usr/share/doc/installation-guide-amd64/ko", "GPL-2.0",
                skip=("apf",)),  # apf.html: the GPL itself
)


class MissingPackageError(FileNotFoundError):
    """A package of PACKAGES has no .deb in the folder given."""


def page_quality(package: HelpPackage, relpath: str) -> str:
    """'guide' for how-to guides, tutorials and manuals, 'reference' for the rest (the README's rule).

    LibreOffice (guides=()): pages under a module's guide/ folder (text/<module>/guide/) are guides.
    GIMP: pages whose file name starts with one of GIMP_GUIDES. The GNOME help, the Debian FAQ and
    the Debian installation guide (guides=None) are guides throughout."""
    path = PurePosixPath(relpath)
    if package.guides is None:
        return "guide"
    if "guide" in path.parts[:-1] or path.name.startswith(package.guides):
        return "guide"
    return "reference"


def find_deb(debs: Path, package: str) -> Path:
    matches = sorted(debs.glob(f"{package}_*.deb"))
    if not matches:
        raise MissingPackageError(f"{debs}: no {package}_*.deb; fetch it with "
                                  f"`cd {debs} && apt-get download {package}`")
    return matches[-1]


def package_documents(package: HelpPackage, unpacked: Path) -> list[dict]:
    """One document per HTML page of an unpacked package with enough prose, sorted by path."""
    root = unpacked / package.root
    if not root.is_dir():
        raise MissingPackageError(f"{package.name}: the package has no {package.root}/ (another version?)")
    docs = []
    for page in sorted(root.rglob(package.pattern)):
        relpath = page.relative_to(root).as_posix()
        if page.name.startswith(package.skip) or relpath.startswith(package.skip) or (
                package.folders and not relpath.startswith(tuple(f"{folder}/" for folder in package.folders))):
            continue
        text = "\n".join(page_paragraphs(page.read_text(encoding="utf-8", errors="replace"), package.lang))
        if len(text) < MIN_CHARS[package.lang]:
            continue
        docs.append({"id": f"{package.name}/{relpath}", "source": package.name, "licence": package.licence,
                     "lang": package.lang, "quality": page_quality(package, relpath), "text": text})
    return docs


def unpack(deb: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    return into


def write_jsonl_gz(path: Path, docs: list[dict]) -> None:
    """Deterministic gzip: no file name or timestamp in the header, so a rebuild is byte-identical."""
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        for doc in docs:
            f.write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
    tmp.replace(path)


def build(debs: Path, out_dir: Path) -> dict[str, list[dict]]:
    """All packages' documents grouped into output files "<lang>_<quality>"; written under out_dir."""
    found = {p.name: find_deb(debs, p.name) for p in PACKAGES}  # every package checked before any work
    groups: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="demo-corpus-") as tmp:
        unpacked = {name: unpack(deb, Path(tmp) / name) for name, deb in found.items()}
        for package in PACKAGES:
            for doc in package_documents(package, unpacked[package.name]):
                groups.setdefault(f"{doc['lang']}_{doc['quality']}", []).append(doc)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in sorted(groups):
        write_jsonl_gz(out_dir / f"{name}.jsonl.gz", groups[name])
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debs", type=Path, required=True, help="folder holding the packages' .deb files")
    parser.add_argument("--output", type=Path, default=OUT_DIR, help="corpus folder to write")
    args = parser.parse_args(argv)
    try:
        groups = build(args.debs, args.output)
    except MissingPackageError as e:
        print(f"build_demo_corpus: {e}", file=sys.stderr)
        return 2
    for name, docs in sorted(groups.items()):
        chars = sum(len(d["text"]) for d in docs)
        size = sum(len(d["text"].encode("utf-8")) for d in docs)
        print(f"{name}: {len(docs)} documents, {chars:,} characters, {size:,} bytes of text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
