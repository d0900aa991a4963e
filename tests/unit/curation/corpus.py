"""Small generated English and Korean documents that pass the example's heuristics."""
from __future__ import annotations

import json
import random
from pathlib import Path

EN_WORDS = ("river mountain library student teacher garden window market science history energy planet "
            "ocean forest museum village winter summer method theory answer question bridge engine signal "
            "coffee market record memory number system culture language music painter doctor farmer "
            "island harbour station kitchen letter picture season weather journey country city").split()
EN_VERBS = "explains describes builds measures visits studies changes carries finds protects".split()
EN_ADJ = "small bright quiet ancient modern careful simple famous local useful".split()

KO_NOUNS = ("학생들은 선생님께서 도서관에서 박물관을 과학자들이 역사를 바다에서 산에서 시장에서 "
            "도시의 마을에 겨울에는 여름에는 음악을 그림을 언어를 문화의 기술이 에너지를 지구의 "
            "연구자들이 농부들은 기차역에서 부엌에서 편지를 사진을 계절이 날씨가 여행을 나라의").split()
KO_VERBS = "설명했다. 공부한다. 만들었다. 측정했다. 방문했다. 연구한다. 바꾸었다. 찾았다. 보호한다. 기록했다.".split()
KO_ADV = "조용히 천천히 매우 자주 함께 다시 오래 새로운 작은 유명한".split()


def english_doc(seed: int, sentences: int = 14) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        words = ["The", rng.choice(EN_ADJ), rng.choice(EN_WORDS), rng.choice(EN_VERBS), "the",
                 rng.choice(EN_WORDS), "of", rng.choice(EN_WORDS), "and", rng.choice(EN_WORDS),
                 "with", "a", rng.choice(EN_ADJ), rng.choice(EN_WORDS)]
        lines.append(" ".join(words) + ".")
    return "\n".join(lines)


def korean_doc(seed: int, sentences: int = 12) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        words = [rng.choice(KO_NOUNS), rng.choice(KO_ADV), rng.choice(KO_NOUNS), rng.choice(KO_NOUNS),
                 rng.choice(KO_ADV), rng.choice(KO_NOUNS), rng.choice(KO_NOUNS), rng.choice(KO_VERBS)]
        lines.append(" ".join(words))
    return "\n".join(lines)


def write_jsonl(path: Path, docs: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write((d if isinstance(d, str) else json.dumps(d, ensure_ascii=False)) + "\n")
    return path
