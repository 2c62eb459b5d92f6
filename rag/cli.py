"""The ``rag`` command. Heavy libraries are imported inside the commands, so ``rag --help`` is instant."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

from rag import __version__
from rag.errors import RagError, UsageError

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def _settings_help(name: str) -> str:
    # Flag help is the settings' own field descriptions. This imports rag.settings and so pydantic (about
    # 0.1 s), never the heavy libraries: those are imported inside the commands.
    from rag.settings import Settings

    return Settings.help(name)


def _common(parser: argparse.ArgumentParser, k: bool = False, backend: bool = False, json_flag: bool = True) -> None:
    group = parser.add_argument_group("settings (override RAG_* environment variables)")
    group.add_argument("--corpus-dir", type=Path, help=_settings_help("corpus_dir"))
    group.add_argument("--index-dir", type=Path, help=_settings_help("index_dir"))
    group.add_argument("--index-name", help=_settings_help("index_name"))
    group.add_argument("--embed-model", help=_settings_help("embed_model"))
    if k:
        group.add_argument("--k", type=int, dest="top_k", metavar="N", help=_settings_help("top_k"))
    if backend:
        group.add_argument("--backend", help=_settings_help("backend"))
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as every other error of the command: one line, ``rag: error: ...``, exit 2
    (argparse prints a usage block first; the usage is one ``--help`` away)."""

    def error(self, message: str):
        print(f"rag: error: {_one_line(message)} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(UsageError.exit_code)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rag",
        description="Question answering over news articles with sentence-level, verifiable citations.",
    )
    parser.add_argument("--version", action="version", version=f"rag {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    index = sub.add_parser("index", help="build, extend and describe the index")
    index_sub = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    build = index_sub.add_parser("build", help="(re)build the index from the corpus folder")
    _common(build)
    build.add_argument("--index-type", choices=["flat", "hnsw"], help=_settings_help("index_type"))
    add = index_sub.add_parser("add", help="add .txt/.md/.html/.pdf files to the corpus and update the index")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    add.add_argument("--replace", action="store_true", help="replace documents of the same name")
    _common(add)
    push = index_sub.add_parser("push", help="copy the built local index into a PostgreSQL store (no re-embedding)")
    push.add_argument("--store", required=True, metavar="URL", help="the PostgreSQL URL (postgresql://user@host/db)")
    _common(push)
    info = index_sub.add_parser("info", help="documents, chunk counts, model and build time")
    _common(info)

    search = sub.add_parser("search", help="ranked passages for a query (hybrid dense + BM25)")
    search.add_argument("query")
    _common(search, k=True)

    ask = sub.add_parser("ask", help="answer a question with cited sentences ('-' reads one question per line)")
    ask.add_argument("question", help="the question, or '-' to read questions from standard input")
    _common(ask, k=True, backend=True)

    chat = sub.add_parser(
        "chat",
        help="ask questions in a conversation: follow-ups are rewritten into standalone questions",
        description="A question per line; a follow-up ('How many fighters does it have?') is rewritten from the "
        "earlier turns into a standalone question, which is shown and is what gets retrieved. Type /reset to "
        "start a new conversation, /help to list the commands, /quit or /exit (or end the input) to leave; any "
        "other line starting with '/' and a word is an unknown command, not a question.",
    )
    _common(chat, k=True, backend=True)

    check = sub.add_parser("check", help="verdict on a claim or quote, with the supporting passages")
    check.add_argument("claim")
    _common(check, k=True)

    evaluate = sub.add_parser("eval", help="run a gold question set: retrieval, answer, citation metrics")
    evaluate.add_argument("--gold", type=Path, help="gold set: JSONL (default: eval/gold.jsonl) or SQuAD 2.0 JSON, "
                          "whose articles are indexed in a temporary corpus for the run")
    evaluate.add_argument("--claims", type=Path, metavar="FILE",
                          help="instead of questions, score `rag check` on a claim set (JSONL: id, claim, label "
                          "supported/partial/unsupported, kind, evidence; a foo.txt beside foo.claims.jsonl is "
                          "checked in a temporary corpus)")
    evaluate.add_argument("--report", type=Path, metavar="DIR",
                          help="write report.md, metrics.json, results.jsonl and plots (calibration ones included)")
    evaluate.add_argument("--no-baseline", action="store_true", help="skip the baselines")
    evaluate.add_argument("--baselines", metavar="NAMES", default=None,
                          help="comma-separated baselines to run: tutorial (LangChain RAG tutorial), top1_sentence "
                          "(the sentence most similar to the question) (default: both)")
    _common(evaluate, k=True, backend=True)

    serve = sub.add_parser("serve", help="launch the web app")
    serve.add_argument("--host", help=_settings_help("host"))
    serve.add_argument("--port", type=int, help=_settings_help("port"))
    serve.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="processes answering the JSON API (each loads the model and index); with more than 1, "
                            "the web app runs in a process of its own on --ui-port")
    serve.add_argument("--ui-port", type=int, dest="ui_port", help=_settings_help("ui_port"))
    _common(serve, backend=True, json_flag=False)
    return parser


_SETTING_FLAGS = ("corpus_dir", "index_dir", "index_name", "embed_model", "top_k", "backend", "index_type", "host", "port",
                  "ui_port")


def make_settings(args: argparse.Namespace):
    from pydantic import ValidationError

    from rag.settings import Settings

    overrides = {k: getattr(args, k) for k in _SETTING_FLAGS if getattr(args, k, None) is not None}
    _warn_unknown_settings()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        origin = _from_env_file(str(first["loc"][0]), overrides) if first["loc"] else ""
        raise UsageError(f"invalid setting {field}: {first['msg']}{origin}") from None
    except UnicodeDecodeError as exc:  # the only file read here is the .env of the working directory
        raise UsageError(f"{Path('.env').absolute()}: not valid UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise UsageError(f"{Path('.env').absolute()}: cannot be read ({exc.strerror or type(exc).__name__})") from None


_warned: set[str] = set()


def _warn_unknown_settings() -> None:
    """A one-line warning on stderr for each RAG_* variable (environment or .env) that names no setting, once per
    process: a misspelled setting (RAG_TOPK) would otherwise silently keep its default. Not an error: other tools
    may use the prefix too."""
    from rag.settings import unknown_settings

    for message in unknown_settings():
        if message not in _warned:
            _warned.add(message)
            print(f"rag: warning: {_one_line(message)}", file=sys.stderr)


def _from_env_file(field: str, overrides: dict) -> str:
    """" (from <.env path>)" when the value of ``field`` came from the .env file of the working directory: not
    from a flag, nor from the environment (which wins over .env); else "". Names match as pydantic-settings
    matches them, ignoring case."""
    variable = f"RAG_{field}".upper()
    if field in overrides or any(name.upper() == variable for name in os.environ):
        return ""
    env_file = Path(".env")
    try:
        from dotenv import dotenv_values

        in_file = env_file.is_file() and any((name or "").upper() == variable for name in dotenv_values(env_file))
    except (OSError, UnicodeDecodeError, ValueError):
        return ""
    return f" (from {env_file.absolute()})" if in_file else ""


def _shown(name: str) -> str:
    """A file name or document id as one printable line (a newline in a file name is shown escaped)."""
    return name if name.isprintable() else repr(name)


def _one_line(text: str) -> str:
    """A message as one printable line: control characters (a newline in a file name it quotes) escaped."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _OneLineMessages(logging.Filter):
    """Every warning printed as one line, whatever file name or text it quotes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg, record.args = _one_line(message), None
        return True


def _stdin_lines():
    """Lines of standard input decoded as UTF-8 whatever the locale or PYTHONIOENCODING asks: undecodable bytes
    become lone surrogates, reported for their line only (a strict sys.stdin would end the whole command)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # replaced by a text stream (tests, embedding)
        yield from sys.stdin
        return
    for raw in buffer:
        # As text mode does (universal newlines), a lone carriage return ends a line too.
        yield from raw.decode("utf-8", "surrogateescape").replace("\r\n", "\n").split("\r")


def _load_pipeline(args):
    from rag.pipeline import Pipeline

    return Pipeline.load(make_settings(args))


# Line breaks to Python's str.splitlines (and to JavaScript, for U+2028/9) that JSON leaves unescaped: escaped,
# so every record is one line to any reader (a question echoed with an error can hold them).
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False).translate(_LINE_BREAKS) + "\n")
    sys.stdout.flush()


def _bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() else f"**{text}**"


def _print_answer(answer) -> None:
    from rag.answer.base import NOTHING_ASKED

    text = answer.answer
    # Piped output marks the short answer **so**; a Markdown document's own ** in the answer would mix with it.
    if answer.short_answer and answer.short_answer in text and (sys.stdout.isatty() or "**" not in text):
        text = text.replace(answer.short_answer, _bold(answer.short_answer), 1)
    print(text)
    if answer.abstained:
        if answer.answer != NOTHING_ASKED:  # that one says itself why there is no answer
            print("(no answer: the retrieved passages do not contain it)")
    elif answer.confidence is not None and answer.backend == "extractive":
        print(f"(confidence {answer.confidence:.0%}: estimated probability that this answer is right)")
    elif answer.confidence is not None:
        print(f"(confidence {answer.confidence:.0%}: the model's own check that the passages it cites answer "
              "the question)")
    if answer.prompt_tokens:
        print(f"(prompt: {answer.prompt_tokens} tokens)")
    for c in answer.citations:
        origin = ", attributed" if getattr(c, "origin", "model") == "attributed" else ""
        print(f"  [{c.n}] {_shown(c.source)}:{c.start}-{c.end} ({c.verdict}{origin}) {c.text}")
    for w in answer.warnings:
        print(f"  warning: {w}")


def cmd_index(args) -> int:
    settings = make_settings(args)
    from rag.embeddings import Embedder
    from rag.stores import build_index, open_index

    embedder = Embedder.from_settings(settings)
    if args.index_command == "build":
        index = build_index(settings, embedder)
    elif args.index_command == "add":
        from rag.pipeline import Pipeline
        from rag.stores import open_index as _open

        pipeline = Pipeline(settings, embedder, _open(settings, embedder))
        before = set(pipeline.index.documents)
        added = pipeline.add_documents(args.paths, replace=args.replace)
        index = pipeline.index
        if not args.json:
            for doc in added:
                print(f"{'replaced' if doc.id in before else 'added'} {doc.id} ({len(doc.text):,} characters)")
    elif args.index_command == "push":
        from rag import pgstore

        local = settings.model_copy(update={"store": "local"})
        if not (local.index_path / "manifest.json").exists():
            # (load_index's "rebuild with `rag index build`" would, with RAG_STORE set, build the store instead)
            raise UsageError(f"no local index {settings.index_name} at {local.index_path} to push: build it with "
                             "`RAG_STORE=local rag index build` first")
        index = pgstore.push(local, pgstore.check_url(args.store), embedder)
        if not args.json:
            print(f"pushed index {settings.index_name} to {pgstore.redact(args.store)} "
                  f"(schema {pgstore.schema_name(settings.index_name)}, version {index.version})")
    else:
        index = open_index(settings, embedder)
    manifest = index.manifest
    from rag.documents import ignored_entries, ignored_files

    try:  # what the corpus folder holds that is never indexed: other file types, subfolders, broken links
        ignored = [(path, "unsupported file type, not indexed") for path in ignored_files(settings.corpus_dir)]
        ignored += ignored_entries(settings.corpus_dir)
    except RagError:  # no corpus folder: the index is all there is
        ignored = []
    if args.json:
        _print_json({k: manifest[k] for k in ("format_version", "created", "build_seconds", "embedding", "chunking",
                                              "index_type", "counts", "documents")}
                    | {"skipped": manifest.get("skipped", []),
                       "ignored": [{"id": path.name, "reason": reason} for path, reason in ignored],
                       "path": str(settings.index_path)}
                    | (_store_json(args, settings) if manifest.get("store") == "postgresql" else {}))
        return 0
    counts = manifest["counts"]
    if manifest.get("store") == "postgresql":
        where = "{url} (schema {schema})".format(**_store_json(args, settings)["store"])  # pushed to: not RAG_STORE
    else:
        where = settings.index_path
    print(f"index {settings.index_name} at {where}")
    print(f"  model     {manifest['embedding']['model_id']} (sha256 {manifest['embedding']['sha256'][:12]}…, "
          f"dim {manifest['embedding']['dim']})")
    print(f"  chunking  {manifest['chunking']['chunk_sentences']} sentences, overlap {manifest['chunking']['chunk_overlap']}; "
          + (f"PostgreSQL {manifest['index_type']} + full-text" if manifest.get("store") == "postgresql"
             else f"{manifest['index_type']} FAISS + BM25"))
    print(f"  built     {manifest['created']} in {manifest['build_seconds']:.2f}s")
    print(f"  totals    {counts['documents']} documents, {counts['sentences']} sentences, {counts['chunks']} chunks")
    token_vectors = getattr(index, "token_vectors", None)
    stored = index.token_summary() if hasattr(index, "token_summary") else None
    if token_vectors is not None:
        print(f"  pieces    {len(token_vectors):,} word-piece vectors for the answerer's token matches "
              f"({token_vectors.nbytes / 1e6:.1f} MB)")
    elif stored is not None:
        print(f"  pieces    {stored['vectors']:,} word-piece vectors for the answerer's token matches "
              f"({stored['bytes'] / 1e6:.1f} MB; table sentence_tokens {stored['table_bytes'] / 1e6:.1f} MB on disk), "
              "read as questions need them")
    else:
        print("  pieces    none stored: the answerer encodes each candidate sentence's word pieces the first time a "
              "process needs them (`rag index build` stores them)")
    word_vectors = getattr(index, "word_vectors", None)
    if word_vectors is not None:
        print(f"  words     {len(index.words):,} vocabulary words with their vectors for the answerer's soft word "
              f"matches ({word_vectors.nbytes / 1e6:.1f} MB"
              + ("; table words, loaded with the corpus)" if manifest.get("store") == "postgresql" else ")"))
    else:
        print("  words     none stored: the answerer embeds the words the model's vocabulary table lacks the first "
              "time a process needs them (`rag index build` stores them)")
    for d in manifest["documents"]:
        print(f"  - {_shown(d['id'])}  date={d['date'] or '-'}  {d['chars']:,} chars  {d['sentences']} sentences  "
              f"{d['chunks']} chunks" + (f"  ({d['duplicate_paragraphs']:,} duplicate paragraphs indexed once)"
                                         if d.get("duplicate_paragraphs") else ""))
    for path, reason in ignored:
        print(f"  ignored   {_shown(path.name)} ({_one_line(reason)})")
    for skipped in manifest.get("skipped", []):  # files of the corpus folder that could not be read
        print(f"  skipped   {_shown(skipped['id'])} (not indexed: {_one_line(skipped['reason'])})")
    return 0


def _store_json(args, settings) -> dict:
    """Where a PostgreSQL index is, for `rag index info --json` ("path" is only where a local copy would be)."""
    from rag.pgstore import redact, schema_name

    store = args.store if args.index_command == "push" else settings.store
    return {"store": {"url": redact(store), "schema": schema_name(settings.index_name)}}


def cmd_search(args) -> int:
    pipeline = _load_pipeline(args)
    hits = pipeline.search(args.query, args.top_k)
    if args.json:
        from rag.types import search_json

        _print_json(search_json(pipeline.clean_query(args.query), hits))
        return 0
    for h in hits:
        print(f"{h.rank}. [{h.score:.4f}] {_shown(h.chunk.source)}:{h.chunk.start}-{h.chunk.end}"
              + (f"  ({h.chunk.section})" if h.chunk.section else ""))
        print(f"   {h.chunk.text}")
    return 0


def _stream_answer(pipeline, pieces, backend: str | None, quiet: bool):
    """Show what ``ask_stream`` yields as it comes (the rewritten question, "the model is reading...", an LLM's
    tokens) unless ``quiet``; returns the final Answer and whether tokens were printed."""
    from rag.answer import Reading, Rewritten

    answer, streamed = None, False
    for piece in pieces:
        if isinstance(piece, Rewritten):
            if not quiet:
                print(f"(searching for: {piece.question})")
        elif isinstance(piece, Reading):
            if not quiet:
                _progress_line(f"(the model is reading {piece.passages} passages… {piece.elapsed_s:.0f} s)")
        elif isinstance(piece, str):
            if not quiet and pipeline.backend(backend).name != "extractive":
                if not streamed:
                    _progress_line("")
                sys.stdout.write(piece)
                sys.stdout.flush()
                streamed = True
        else:
            answer = piece
    return answer, streamed


def cmd_ask(args) -> int:
    pipeline = _load_pipeline(args)
    if args.question != "-":
        if args.json:
            answer = pipeline.ask(args.question, backend=args.backend, k=args.top_k)
            _print_json(answer.to_json())
        else:
            answer, streamed = _stream_answer(
                pipeline, pipeline.ask_stream(args.question, backend=args.backend, k=args.top_k, progress=True),
                args.backend, quiet=False)
            if streamed:
                print("\n")
            _print_answer(answer)
        return 0
    status = 0
    for number, line in enumerate(_stdin_lines(), 1):
        question = line.strip()
        if not question:
            continue
        try:
            answer = pipeline.ask(question, backend=args.backend, k=args.top_k)
            record = answer.to_json()
        except UsageError as exc:
            # Undecodable input bytes arrive as lone surrogates; echoed as U+FFFD so the output stays UTF-8.
            echoed = re.sub("[\ud800-\udfff]", "\ufffd", question)
            record, status = {"question": echoed, "error": str(exc)}, exc.exit_code
        if args.json:
            _print_json(record)
        elif "error" in record:
            print(f"rag: error: line {number}: {record['error']}", file=sys.stderr)
        else:
            print(f"Q: {answer.question}")
            _print_answer(answer)
            print()
    return status


def _progress_line(text: str) -> None:
    """A transient status line on stderr (a terminal only): rewritten by the next, cleared with ""."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text)
        sys.stderr.flush()


CHAT_COMMANDS = ("/quit", "/exit", "/reset", "/help")
CHAT_HELP = """commands:
  /reset   start a new conversation
  /help    list these commands
  /quit    leave (/exit too, or the end of the input)
any other line is a question (a line of "/" and a word that is no command is refused)"""
_KNOWN_COMMANDS = "the commands are /reset, /help, /quit and /exit"
# A line that starts with a slash and a word is a command, known or not; "/etc/hosts?" is a question.
_COMMAND = re.compile(r"/([A-Za-z][\w-]*)(?=[\s?!.]|$)(.*)", re.DOTALL)


def _chat_command(line: str) -> tuple[str | None, str | None]:
    """(command, None) for a known command line such as "/reset", (None, error) for an unknown or misused one
    ("/rset"), (None, None) for a question."""
    match = _COMMAND.match(line)
    if match is None:
        return None, None
    command = f"/{match[1].lower()}"
    if command not in CHAT_COMMANDS:
        return None, f"unknown command /{match[1]} ({_KNOWN_COMMANDS})"
    if match[2].strip(" ?!."):
        return None, f"{command} takes nothing after it ({_KNOWN_COMMANDS})"
    return command, None


def cmd_chat(args) -> int:

    pipeline = _load_pipeline(args)
    interactive = sys.stdin.isatty()
    if interactive and not args.json:
        print("Ask about the indexed articles; follow-up questions are understood. /reset starts over, /help lists "
              "the commands, /quit leaves.")
    history: list[dict] = []
    status = 0
    lines = _stdin_lines()
    while True:
        if interactive:
            sys.stdout.write("you> ")
            sys.stdout.flush()
        line = next(lines, None)
        if line is None:
            break
        question = line.strip()
        if not question:
            continue
        command, error = _chat_command(question)
        if error is not None:  # a mistyped command is never sent to the answerer as a question
            status = UsageError.exit_code
            if args.json:
                _print_json({"question": question, "error": error})
            else:
                print(f"rag: error: {_one_line(error)}", file=sys.stderr)
            continue
        if command in ("/quit", "/exit"):
            break
        if command == "/reset":
            history = []
            if not args.json:
                print("(new conversation)")
            continue
        if command == "/help":
            print(CHAT_HELP, file=sys.stderr if args.json else sys.stdout)  # --json: stdout holds only records
            continue
        try:
            answer, streamed = _stream_answer(
                pipeline, pipeline.ask_stream(question, backend=args.backend, k=args.top_k, history=history,
                                              progress=True),
                args.backend, quiet=args.json)
        except UsageError as exc:
            status = exc.exit_code
            if args.json:
                _print_json({"question": question, "error": str(exc)})
            else:
                print(f"rag: error: {exc}", file=sys.stderr)
            continue
        if args.json:
            _print_json(answer.to_json())
        else:
            if streamed:
                print("\n")
            _print_answer(answer)
            print()
        history.append({"question": answer.standalone_question or answer.question, "answer": answer.answer,
                        "short_answer": answer.short_answer})
    return status


def cmd_check(args) -> int:
    pipeline = _load_pipeline(args)
    result = pipeline.check(args.claim, args.top_k)
    if args.json:
        _print_json(result.to_json())
        return 0
    print(f"{result.verdict.upper()}: {result.reason}")
    for i, p in enumerate(result.passages, 1):
        print(f"  {i}. {p.source}:{p.start}-{p.end} {p.text}")
    return 0


def cmd_eval(args) -> int:
    from rag.eval import evaluate, format_table

    if args.claims is not None and args.gold is not None:
        raise UsageError("--claims and --gold are two different runs; give one")
    if args.no_baseline and args.baselines is not None:
        raise UsageError("--no-baseline and --baselines contradict each other; give one")
    if args.baselines is not None and not args.baselines.strip(" ,"):
        raise UsageError("--baselines names no baseline; choose from tutorial, top1_sentence (or --no-baseline)")
    if args.claims is not None:  # a claim run checks claims with the pipeline; these shape question runs only
        given = [flag for flag, value in (("--backend", args.backend), ("--baselines", args.baselines),
                                          ("--no-baseline", args.no_baseline)) if value]
        if given:
            raise UsageError(f"{', '.join(given)}: not used by a --claims run (it checks each claim against the "
                             "top --k passages, with no answer backend or baseline)")
    if args.report is not None:  # before the model loads and the run: a folder that cannot be written wastes neither
        from rag.eval.report import prepare_report_dir

        prepare_report_dir(args.report)
    pipeline = _load_pipeline(args)
    if args.claims is not None:
        from rag.eval.claims import evaluate_claims, format_claim_table
        from rag.eval.report import write_claims_report

        report = evaluate_claims(pipeline, args.claims, progress=not args.json)
        if args.report:
            write_claims_report(report, args.report)
        table = format_claim_table
    else:
        report = evaluate(
            pipeline,
            gold_path=args.gold,
            backend=args.backend,
            k=args.top_k,
            baseline=False if args.no_baseline else (args.baselines or True),
            report_dir=args.report,
            progress=not args.json,
        )
        table = format_table
    if args.json:
        _print_json(report["metrics"])
    else:
        print(table(report["metrics"]))
        if args.report:
            print(f"report written to {args.report}")
    return 0


def cmd_serve(args) -> int:
    settings = make_settings(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be 1 or more, got {args.workers}")
    # Before the model loads: uvicorn would report a busy port in several lines, and exit 3 ("an input file").
    _check_can_listen(settings.host, settings.port)
    if args.workers > 1 and not args.share:
        _check_can_listen(settings.host, settings.ui_port, " (--ui-port)")
    if args.share:  # a gradio.live link needs Gradio's own launcher
        from ui.app import launch

        launch(settings, share=True)
        return 0
    from ui.server import serve

    serve(settings, workers=args.workers)
    return 0


def _check_can_listen(host: str, port: int, flag: str = "") -> None:
    """A UsageError if a server could not listen on ``host``:``port`` right now (port 0: any free one, nothing to
    check): the port is taken, or the address is not one of this machine's. Binds as uvicorn does (each address
    of the host, SO_REUSEADDR) and lets go at once; another process could still take the port in between."""
    import errno
    import socket

    if not port:
        return
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on host {host}: {exc.strerror}") from None
    for family, kind, proto, _, address in addresses:
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:  # e.g. no IPv6 on this machine: the server skips that address too
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise UsageError(f"port {port}{flag} on {host} is already in use") from None
                raise UsageError(f"cannot listen on {host} port {port}{flag} ({exc.strerror or exc})") from None


COMMANDS = {"index": cmd_index, "search": cmd_search, "ask": cmd_ask, "chat": cmd_chat, "check": cmd_check,
            "eval": cmd_eval, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # The level is set on the handler too: some libraries (bm25s) set their own loggers to DEBUG on import,
    # and their records would otherwise reach stderr between our one-line messages.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(_OneLineMessages())
    logging.basicConfig(level=logging.WARNING, format="rag: %(message)s", handlers=[handler])
    for noisy in ("faiss", "faiss.loader", "bm25s", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RagError as exc:
        print(f"rag: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # keep the one-line contract; RAG_DEBUG=1 shows the traceback
        if os.environ.get("RAG_DEBUG"):
            raise
        print(f"rag: internal error: {type(exc).__name__}: {_one_line(str(exc))} (set RAG_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
