"""Hybrid retrieval on the real model: for questions written for this test (worded unlike eval/gold.jsonl),
the passage that holds the answer is among the top 3 chunks."""

from __future__ import annotations

import pytest

# Known misses, kept visible rather than reworded away; strict=True turns a fix into a failure here, so
# whoever improves retrieval removes the mark. (Three former misses were fixed by keeping "A.J." as one
# BM25 token instead of two dropped letters.)
KNOWN_MISSES: dict[str, str] = {}

# (question, exact substring of the article that answers it)
QUESTIONS = [
    ("Why does Reuters call its militia source A.J.?",
     "Reuters is using the initials of one of his nicknames for clarity."),
    ("What target did one pro-Iranian group claim its drones were aimed at?",
     "fired drones at \"enemy bases in Iraq and the region,\""),
    ("According to Kurdish officials, where did most missiles and drones come from?",
     "But most missile and drone attacks have come directly from Iran, Kurdish officials say."),
    ("What sorts of people did Reuters speak to for this report?",
     "including militia members, Iraqi and Western officials, Shi'ite clerics"),
    ("Since which conflict has the militia leaders' pull towards the West sped up?",
     "\"That's accelerated since the 12-day war\""),
    ("Under what circumstances might Iran's Iraqi allies still join the fighting in force?",
     "could yet enter the fray in force if the war drags on"),
    ("Has A.J.'s faction received fresh arms from Tehran lately?",
     "Tehran has sent no new weapons to his group since the battle with Israel last year"),
    ("How was Ayatollah Khamenei killed?",
     "killed by an airstrike during the Israeli-US assault on Tehran"),
    ("Did the crowd manage to get to the bridge into the Green Zone?",
     "They never managed to reach the bridge leading into the Green Zone"),
    ("What did the Shi'ite militants do after fighting American forces post-2003?",
     "The militants went on to embed themselves in Iraqi government institutions."),
    ("When did the Shi'ite commanders win parliamentary seats after defeating Islamic State?",
     "to win seats in parliamentary elections the next year"),
    ("With whose help did Bashar al-Assad survive the civil war?",
     "weathered a civil war with Iranian proxy help"),
    ("What post did Qassem Soleimani hold in the Revolutionary Guards?",
     "head of the Islamic Revolutionary Guards' Quds Force"),
    ("What photo does A.J. carry on his mobile?",
     "A.J. proudly keeps a picture on his phone of him meeting Ghaani."),
    ("In which cities did A.J.'s group keep people before Nasrallah died?",
     "A.J.'s group still kept operatives in Beirut and Tehran at that time."),
    ("What pulled Hezbollah into war in late 2023?",
     "The outbreak of war in October 2023 between Israel and Iran's Palestinian ally Hamas drew in Hezbollah."),
    ("Who is Mustafa Fahs?",
     "Mustafa Fahs, a Lebanese political activist in close contact with Iraqi Shi'ite leaders"),
    ("What has Hezbollah launched at Israel in the last few days?",
     "firing rockets and drones into Israel from Lebanon"),
    ("When did the militias scale down their deployment in Syria?",
     "The proxies reduced their presence in Syria around 2020"),
    ("Who passed Israel the locations of Iranian commanders in Syria?",
     "Syrians bought off by Israel were giving coordinates for the attacks"),
    ("In what year did Ahmed al-Sharaa become Syria's head of state?",
     "who would become the country's president in 2025"),
    ("Who was left in the resistance axis once Assad had gone?",
     "the axis of resistance was largely down to just Iran, the Houthi militants of Yemen, and the Iraqi groups"),
    ("What had Khazali threatened the year before his TV interview?",
     "he'd openly threatened US interests if Washington backed Israeli attacks on Lebanese Hezbollah"),
    ("What did Khazali's militia movement give rise to in politics?",
     "Khazali's militia movement spawned an affiliated political party, which he also heads."),
    ("How does Iran get cash out of Iraq?",
     "via middlemen who deal in cash deliveries and oil smuggling"),
    ("What role does Hussam Rabie have?",
     "Hussam Rabie, a spokesman for the party headed by Zaidi"),
    ("What danger from across the Syrian border do the paramilitaries say they are prepared for?",
     "They say they're ready to confront a resurgent threat from that group from across the border in Syria."),
    ("How has the commanders' anti-American language changed?",
     "they've softened their anti-American rhetoric"),
    ("Which cleric took part in the pro-Iran demonstrations in Baghdad?",
     "Sheikh Karim al-Saidi, a cleric who attended the pro-Iran protests in Baghdad"),
    ("What does Seif say is the only thing the fighters know?",
     "\"But all we know is jihad.\""),
]


def test_every_answer_is_an_exact_substring_of_the_article(article_text):
    assert len(QUESTIONS) - len(KNOWN_MISSES) >= 20
    assert set(KNOWN_MISSES) <= {q for q, _ in QUESTIONS}
    for question, answer in QUESTIONS:
        assert article_text.count(answer) == 1, f"{answer!r} ({question})"


def _marked(question: str, answer: str, number: int):
    marks = []
    if question in KNOWN_MISSES:
        marks = [pytest.mark.xfail(strict=True, reason=f"known retrieval miss: {KNOWN_MISSES[question]}")]
    return pytest.param(question, answer, id=f"q{number:02d}", marks=marks)


@pytest.mark.parametrize(("question", "answer"), [_marked(q, a, n) for n, (q, a) in enumerate(QUESTIONS, 1)])
def test_answer_passage_is_in_the_top_3(pipeline, question, answer):
    hits = pipeline.search(question, 3)
    assert len(hits) == 3
    ranks = [h.rank for h in hits if answer in h.chunk.text]
    assert ranks, f"{question!r}: answer passage not in the top 3; got " + " | ".join(h.chunk.text[:80] for h in hits)


def test_hits_are_ranked_spans_of_their_document(pipeline):
    hits = pipeline.search("Who coordinated Iran's proxies after Soleimani was killed?", 5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.chunk.id for h in hits}) == 5
    for h in hits:
        doc = pipeline.index.documents[h.chunk.source]
        assert doc.text[h.chunk.start : h.chunk.end] == h.chunk.text


def test_langchain_retriever_returns_documents_with_spans(pipeline, article_text):
    from langchain_core.documents import Document as LCDocument
    from langchain_core.retrievers import BaseRetriever

    retriever = pipeline.as_langchain_retriever(k=3)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("Who replaced Qassem Soleimani?")
    assert len(docs) == 3
    assert any("Esmail Ghaani" in d.page_content for d in docs)
    for d in docs:
        assert isinstance(d, LCDocument)
        meta = d.metadata
        assert meta["source"] == "2026-03-06-iran-proxies-iraq.txt"
        assert article_text[meta["start"] : meta["end"]] == d.page_content
        assert {"chunk_id", "score", "rank"} <= set(meta)
    assert [d.metadata["rank"] for d in docs] == [1, 2, 3]
