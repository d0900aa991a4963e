"""Help pages to prose: what is kept, what is dropped, and the language of each paragraph."""
from __future__ import annotations

import pytest

from megatron_kanana.data.help_pages import hangul_share, page_paragraphs

LIBREOFFICE_KO = """<!DOCTYPE html><html lang="ko"><head><title>자동 URL 인식</title>
<script>var x = "스크립트";</script></head><body>
<header><a class="logo"><p>LibreOffice 7.4 Help</p></a><button>모듈</button></header>
<aside class="leftside"><div class="index-label">색인 🔎︎</div><input type="search"></aside>
<div id="DisplayArea"><meta itemprop="keywords" content="자동 고침">
<h1 id="hd1"><a name="x"></a>자동 URL 인식 기능 끄기</h1>
<p class="paragraph">텍스트를 입력하면 <a href="u">URL</a>일 수 있는지 자동으로 인식합니다 .</p>
<p class="paragraph">The following texts are changed to hyperlinks:</p>
<div class="note"><p>참고</p><p>도구 - 자동 고침 옵션을 선택하고<br/>옵션 탭으로 전환하십시오.</p></div>
<div class="note"><p>참고</p></div>
<pre class="programlisting">Sub Main ' 코드는 산문이 아닙니다
End Sub</pre>
<p>명령 <code>soffice --help</code>를 실행합니다.</p>
<table><tr><td><p>셀 하나</p></td><td><p>셀 둘</p></td></tr></table>
<div class="relatedtopics"><p class="related">관련 주제</p></div>
</div>
<footer><div id="DEBUG"><p>This page is: /text/shared/guide/autocorr_url.xhp</p></div></footer>
</body></html>"""

MALLARD_KO = """<?xml version="1.0" encoding="utf-8"?>
<page xmlns="http://projectmallard.org/1.0/" type="topic" id="bt" xml:lang="ko">
  <info><credit type="author"><name>Jim Campbell</name></credit><desc>블루투스 장치를 페어링합니다.</desc></info>
  <title>블루투스 장치에 컴퓨터 연결하기</title>
  <p>우선 컴퓨터를 장치에 <em>페어링</em>해야 합니다.</p>
  <steps><item><p><gui>블루투스</gui>를 눌러 창을 엽니다.</p></item></steps>
  <media type="image" src="figures/x.png">스크린샷</media>
</page>"""


def test_libreoffice_page_keeps_korean_prose_in_order():
    assert page_paragraphs(LIBREOFFICE_KO, "ko") == [
        "자동 URL 인식 기능 끄기",
        "텍스트를 입력하면 URL일 수 있는지 자동으로 인식합니다.",  # the space before "." goes
        "참고",  # a repeated label is kept once
        "도구 - 자동 고침 옵션을 선택하고 옵션 탭으로 전환하십시오.",
        "명령 soffice --help를 실행합니다.",  # inline code is part of the sentence
        "셀 하나", "셀 둘",
    ]


def test_english_page_keeps_only_paragraphs_without_hangul():
    assert page_paragraphs(LIBREOFFICE_KO, "en") == ["The following texts are changed to hyperlinks:"]


def test_mallard_page_drops_its_info_block_and_media():
    assert page_paragraphs(MALLARD_KO, "ko") == [
        "블루투스 장치에 컴퓨터 연결하기", "우선 컴퓨터를 장치에 페어링해야 합니다.", "블루투스를 눌러 창을 엽니다."]


MALLARD_CODE_KO = """<page xmlns="http://projectmallard.org/1.0/" type="topic" id="hello" xml:lang="ko">
  <title>첫 프로그램</title>
  <p>다음 코드를 <code>main.c</code> 파일에 넣으십시오:</p>
  <code mime="text/x-csrc">/* 창을 만듭니다 */
gtk_window_new ();</code>
  <section><code style="numbered">이 프로그램을 빌드하려면 다음 명령을 실행하십시오: make install</code></section>
  <steps><item><code>make</code><p><code>make</code> 명령으로 빌드합니다.</p></item></steps>
</page>"""


def test_mallard_code_listings_are_dropped_inline_code_stays():
    # a listing's Korean comment or README text is not prose; inline code inside a sentence is
    assert page_paragraphs(MALLARD_CODE_KO, "ko") == [
        "첫 프로그램", "다음 코드를 main.c 파일에 넣으십시오:", "make 명령으로 빌드합니다."]


def test_hangul_share_and_bad_language():
    assert hangul_share("한국어 text") == pytest.approx(3 / 7)
    assert hangul_share("123 -") == 0.0
    with pytest.raises(ValueError, match="lang must be"):
        page_paragraphs("<p>x</p>", "ja")
