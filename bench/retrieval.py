"""Retrieval at scale: hybrid search latency under a tenant filter, HNSW recall, overhead before the first token.

Run from the repository root (the first run builds the corpus, later runs may reuse it):

    .venv/bin/python bench/retrieval.py --rows 100000
    .venv/bin/python bench/retrieval.py --rows 100000 --skip-load --queries 50

It works on its own embedded PostgreSQL + pgvector under `GROUNDWORK_DATA_DIR` (default
`.data/bench`; its name must contain "bench", so it never truncates a dev or test database beside
it), and `DATABASE_URL` must be unset. It migrates that database, and truncates its organisations
and chunks before loading. Use `--maintenance-work-mem 3GB` at 1M rows, so the HNSW graph is built
in memory.

The corpus is synthetic, built for what it has to exercise:

- tenants: one organisation with one knowledge base each; one *large* tenant holds 35 % of the
  chunks, one *selective* tenant 5 % and one *tiny* tenant 0.5 %, the others share the rest.
  Tenants are interleaved in the table, as ingestion over time would leave them.
- embeddings (384-d, L2-normalised): random topic centroids plus anisotropic noise (a decaying
  spectrum in a random rotation, as real embedding spaces have a few dominant directions). Topics
  are shared by all tenants, the hard case for filtered HNSW: a query's nearest neighbours mostly
  belong to other tenants.
- text: 100-220 words (~1,000 characters) drawn Zipf-wise from a few thousand English words (the
  vocabulary of the SQuAD and COVID-QA texts in /work/shared/data when present, pseudo-words
  otherwise), 15 % of them from the chunk's topic words, so BM25 has rare and common terms to rank.
- queries: a vector near a topic centroid, and 3-8 words, one or two of them topic words.

Measured (each query interleaves the modes, so drifting load on a shared machine hits all alike),
after reading every searched relation into the OS page cache (pg_prewarm), as on a server that has
been answering for a while:

- `chunk_search` latency per mode (vector, keyword BM25, hybrid), with `kb.embedding.embed_query`
  replaced by a lookup of the query's precomputed vector, so it is the database and our Python;
- keyword search (the postings, kb.keyword_search) against exhaustive Okapi BM25 over every matching
  tsvector of the tenant (EXACT_BM25_SQL, with the same kept statistics): recall@10/@50, scores,
  both latencies; and a draft replacing one of the tenant's ten documents by an identical version
  (its chunks hidden from the postings and read from their tsvectors): latency, same results;
- recall@10 and @50 of the selector's HNSW scan against an exact scan under the same filter, and
  the same scan with iterative scans off, in strict order, and with HNSW forced where the planner
  would answer exactly (small tenants);
- a draft identical to the live release searched as a draft (vector and hybrid): latency, and
  results the same as live;
- EXPLAIN ANALYZE of the vector and keyword SQL for one query per tenant;
- a hybrid search by part: the keyword query, the vector query (beside it), both retrievers
  done, match ranking, and what follows (rows loaded, duplicates dropped);
- `chat.rag.answer.chat_answer_events` up to the moment it calls the model (everything but the
  model): the real local query embedding, hybrid retrieval, prompt building, database writes.

Figures are printed and written to bench/results/retrieval_<rows>.json, with a top-level "summary"
per tenant role (p95 of each mode, hybrid / vector, keyword recall@10, overhead p95) and the
storage of the postings per live chunk under "sizes".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere, importing the project's modules

if TYPE_CHECKING:
    import psycopg

    from chat.models import Chatbot
    from kb.models import KnowledgeBase

BENCH_DATA_DIR = REPO / ".data" / "bench"
RESULTS_DIR = REPO / "bench" / "results"
VOCAB_SOURCES = [
    Path("/work/shared/data/squad2_dev_half/passages.jsonl"),
    Path("/work/shared/data/covidqa/docs"),
]
DIMS = 384
EMBEDDING_MODEL = "local/minilm"
ORG_PREFIX = "Bench tenant "
DOCS_PER_KB = 10
VOCAB_SIZE = 5000
TOPIC_WORDS = 12
TOPIC_SHARE = 0.15  # share of a chunk's words drawn from its topic's words
COMMON_RANKS = 300  # topic words come from below the most frequent ranks
NOISE_SIGMA = 0.9  # chunk: centroid + noise of this norm (cosine to centroid ~ 0.74)
QUERY_SIGMA = 0.6
ROLE_WEIGHTS = {"large": 0.35, "selective": 0.05, "tiny": 0.005}
POOL = 50  # chunk_search(limit=5, candidates=50), the chat defaults: 50 candidates per retriever
LIMIT = 5

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


# --- small helpers ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 0.5), 2),
        "p95": round(percentile(values, 0.95), 2),
        "mean": round(statistics.fmean(values), 2),
        "max": round(max(values), 2),
        "n": len(values),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')} load {load_average()[0]:.2f}] {message}", flush=True)


@contextmanager
def stopwatch(into: dict[str, Any], key: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - started, 2)


# --- the synthetic corpus --------------------------------------------------------------------


@dataclass
class CorpusSpec:
    rows: int
    tenants: int
    seed: int
    clusters: int
    weights: list[float]
    roles: dict[str, int]  # role -> tenant index

    @classmethod
    def build(cls, *, rows: int, tenants: int, seed: int) -> CorpusSpec:
        if tenants < len(ROLE_WEIGHTS) + 1:
            raise SystemExit(f"--tenants must be at least {len(ROLE_WEIGHTS) + 1}")
        rest = (1.0 - sum(ROLE_WEIGHTS.values())) / (tenants - len(ROLE_WEIGHTS))
        weights = [*ROLE_WEIGHTS.values(), *([rest] * (tenants - len(ROLE_WEIGHTS)))]
        # ~2,000 chunks per topic: the selective tenant then has ~100 per topic, enough for its
        # top 50 to be topical rather than noise.
        return cls(
            rows=rows,
            tenants=tenants,
            seed=seed,
            clusters=max(20, rows // 2000),
            weights=weights,
            roles={role: i for i, role in enumerate(ROLE_WEIGHTS)},
        )


def build_vocabulary(size: int) -> tuple[list[str], str]:
    """Words by descending frequency, from real English text when available."""
    counts: Counter[str] = Counter()
    for source in VOCAB_SOURCES:
        files = sorted(source.glob("*.txt")) if source.is_dir() else [source] if source.exists() else []
        for path in files:
            text = path.read_text(encoding="utf-8", errors="replace")
            if path.suffix == ".jsonl":
                text = " ".join(json.loads(line)["text"] for line in text.splitlines() if line.strip())
            counts.update(w for w in re.findall(r"[a-z]+", text.lower()) if 2 <= len(w) <= 16)
    words = [w for w, _ in counts.most_common(size)]
    if len(words) >= size // 2:
        return words, "+".join(str(s) for s in VOCAB_SOURCES)
    # Pseudo-words (consonant-vowel syllables): enough to rank, if no real text is at hand.
    rng = np.random.default_rng(0)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    pseudo: list[str] = []
    seen: set[str] = set()
    while len(pseudo) < size:
        word = "".join(rng.choice(syllables, size=int(rng.integers(2, 4))))
        if word not in seen:
            seen.add(word)
            pseudo.append(word)
    return pseudo, "pseudo-words"


@dataclass
class Query:
    tenant: int
    cluster: int
    text: str
    vector: list[float]


class SyntheticCorpus:
    """Deterministic (from the seed) generator of chunk batches and of queries."""

    def __init__(self, spec: CorpusSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng(spec.seed)
        self.vocab, self.vocab_source = build_vocabulary(VOCAB_SIZE)
        ranks = np.arange(1, len(self.vocab) + 1, dtype=np.float64)
        zipf = 1.0 / (ranks + 2.7)  # Zipf-Mandelbrot, s = 1: the shape of real word frequencies
        self.word_cdf = np.cumsum(zipf / zipf.sum())
        low = min(COMMON_RANKS, len(self.vocab) // 4)
        self.topic_words: IntArray = rng.integers(low, len(self.vocab), size=(spec.clusters, TOPIC_WORDS))
        centroids = rng.standard_normal((spec.clusters, DIMS))
        self.centroids: FloatArray = (centroids / np.linalg.norm(centroids, axis=1, keepdims=True)).astype(np.float32)
        rotation, _ = np.linalg.qr(rng.standard_normal((DIMS, DIMS)))
        spectrum = 1.0 / np.sqrt(np.arange(1, DIMS + 1))  # a few strong directions, a long tail
        spectrum /= np.linalg.norm(spectrum)  # E|noise| = 1 before scaling by sigma
        self.noise_basis: FloatArray = (spectrum[:, None] * rotation.T).astype(np.float32)
        self.tenant_cdf = np.cumsum(np.asarray(spec.weights) / sum(spec.weights))

    def vectors(self, clusters: IntArray, sigma: float, rng: np.random.Generator) -> FloatArray:
        noise = rng.standard_normal((len(clusters), DIMS), dtype=np.float32) @ self.noise_basis
        v = self.centroids[clusters] + sigma * noise
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    def _words(self, n: int, rng: np.random.Generator) -> IntArray:
        return np.minimum(np.searchsorted(self.word_cdf, rng.random(n)), len(self.vocab) - 1)

    def texts(self, clusters: IntArray, rng: np.random.Generator) -> list[str]:
        lengths = rng.integers(100, 221, size=len(clusters))
        total = int(lengths.sum())
        idx = self._words(total, rng)
        owner = np.repeat(clusters, lengths)
        topical = rng.random(total) < TOPIC_SHARE
        idx[topical] = self.topic_words[owner[topical], rng.integers(0, TOPIC_WORDS, size=int(topical.sum()))]
        vocab = self.vocab
        words = [vocab[i] for i in idx.tolist()]
        out: list[str] = []
        start = 0
        for length in lengths.tolist():
            out.append(" ".join(words[start : start + length]))
            start += length
        return out

    def batch(self, start: int, size: int) -> tuple[IntArray, IntArray, list[str], FloatArray]:
        """Rows [start, start + size): tenant index, document slot, text, embedding."""
        rng = np.random.default_rng([self.spec.seed, 1, start])
        tenants = np.searchsorted(self.tenant_cdf, rng.random(size)).astype(np.int64)
        tenants = np.minimum(tenants, self.spec.tenants - 1)
        docs = rng.integers(0, DOCS_PER_KB, size=size)
        clusters = rng.integers(0, self.spec.clusters, size=size)
        return tenants, docs, self.texts(clusters, rng), self.vectors(clusters, NOISE_SIGMA, rng)

    def queries(self, tenant: int, count: int, salt: int = 0) -> list[Query]:
        rng = np.random.default_rng([self.spec.seed, 2, tenant, salt])
        clusters = rng.integers(0, self.spec.clusters, size=count)
        vectors = self.vectors(clusters, QUERY_SIGMA, rng)
        out = []
        for cluster, vector in zip(clusters.tolist(), vectors, strict=True):
            n_words = int(rng.integers(3, 9))
            n_topic = int(rng.integers(1, 3))
            picks = [int(w) for w in rng.choice(self.topic_words[cluster], size=n_topic, replace=False)]
            picks += self._words(n_words - n_topic, rng).tolist()
            rng.shuffle(picks)
            text = " ".join(self.vocab[i] for i in picks)
            out.append(Query(tenant=tenant, cluster=cluster, text=text, vector=vector.tolist()))
        return out


# --- loading ---------------------------------------------------------------------------------


STAGE_SQL = """
CREATE UNLOGGED TABLE IF NOT EXISTS bench_chunk_stage (
    knowledge_base_id bigint, document_id bigint, version_id bigint, ordinal integer,
    text text, embedding vector(384)
)
"""
PUBLISH_SQL = """
INSERT INTO kb_chunk (knowledge_base_id, document_id, version_id, ordinal, text, section_path, content_hash,
                      is_live, embedding_model, embedding_dims, embedding, search_vector)
SELECT knowledge_base_id, document_id, version_id, ordinal, text, '[]'::jsonb, md5(text),
       true, %s, %s, embedding, to_tsvector('english', text)
FROM bench_chunk_stage
"""
META_SQL = "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb NOT NULL)"
INDEXES = ("chunk_search_vector_gin", "chunk_embedding_hnsw_384")


def raw_connection() -> psycopg.Connection[Any]:
    """A plain psycopg connection to the bench database, with pgvector's binary adapters."""
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    register_vector(conn)
    return conn


def create_tenants(spec: CorpusSpec) -> list[dict[str, Any]]:
    """Organisations and knowledge bases through the services; documents and versions in bulk."""
    from django.db import connection

    from accounts.services import organization_create, user_get_or_create
    from kb.models import Document, DocumentStatus, DocumentVersion, SourceType
    from kb.services import knowledge_base_create

    with connection.cursor() as cursor:
        # The bench database only (main() refuses any other): all tenants, chunks and chats go.
        cursor.execute("TRUNCATE accounts_organization, kb_chunk CASCADE")
    user, _ = user_get_or_create(email="bench@example.test", password=None)
    tenants: list[dict[str, Any]] = []
    for i in range(spec.tenants):
        org = organization_create(name=f"{ORG_PREFIX}{i:02d}", owner=user)
        kb = knowledge_base_create(
            organization=org, name="Synthetic KB", created_by=user, embedding_model=EMBEDDING_MODEL
        )
        docs = Document.objects.bulk_create(
            Document(organization=org, knowledge_base=kb, title=f"Synthetic document {j}", source_type=SourceType.TEXT)
            for j in range(DOCS_PER_KB)
        )
        versions = DocumentVersion.objects.bulk_create(
            DocumentVersion(document=d, number=1, sha256=f"{d.pk:064x}", status=DocumentStatus.READY) for d in docs
        )
        for d, v in zip(docs, versions, strict=True):
            d.live_version = d.latest_version = v
        Document.objects.bulk_update(docs, ["live_version", "latest_version"])
        tenants.append(
            {
                "index": i,
                "org_id": org.pk,
                "kb_id": kb.pk,
                "docs": [[d.pk, v.pk] for d, v in zip(docs, versions, strict=True)],
            }
        )
    return tenants


def load_corpus(
    spec: CorpusSpec, corpus: SyntheticCorpus, *, batch_size: int, mem: str, workers: int
) -> dict[str, Any]:
    """Truncate, create tenants, drop the search indexes, bulk-load chunks, rebuild the indexes."""
    timings: dict[str, Any] = {"load_average_at_start": load_average()}
    tenants = create_tenants(spec)
    kb_of = np.array([t["kb_id"] for t in tenants], dtype=np.int64)
    doc_of = np.array([[d for d, _ in t["docs"]] for t in tenants], dtype=np.int64)
    ver_of = np.array([[v for _, v in t["docs"]] for t in tenants], dtype=np.int64)

    conn = raw_connection()
    index_defs: dict[str, str] = {}
    with conn.cursor() as cur:
        for name in INDEXES:
            cur.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
            row = cur.fetchone()
            if row is None:
                raise SystemExit(f"Index {name} is missing: run `manage.py migrate` on the bench database first.")
            index_defs[name] = row[0]
            # Built once after the load instead of maintained per row: several times faster.
            cur.execute(f"DROP INDEX {name}")
        cur.execute(STAGE_SQL)
        cur.execute(META_SQL)

    # A producer thread generates the next batch (numpy releases the GIL; joining words does not,
    # but the main thread is mostly waiting on the server) while the server publishes this one.
    batches: queue.Queue[tuple[int, tuple[IntArray, IntArray, list[str], FloatArray]] | None] = queue.Queue(maxsize=2)

    def produce() -> None:
        for start in range(0, spec.rows, batch_size):
            batches.put((start, corpus.batch(start, min(batch_size, spec.rows - start))))
        batches.put(None)

    producer = threading.Thread(target=produce, daemon=True)
    started = time.perf_counter()
    producer.start()
    done = 0
    copy_s = publish_s = 0.0
    while (item := batches.get()) is not None:
        start, (tenant_idx, doc_slot, texts, vectors) = item
        kb_ids, doc_ids, ver_ids = kb_of[tenant_idx], doc_of[tenant_idx, doc_slot], ver_of[tenant_idx, doc_slot]
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("TRUNCATE bench_chunk_stage")
            with cur.copy("COPY bench_chunk_stage FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int8", "int8", "int4", "text", "vector"])
                for row in zip(
                    kb_ids.tolist(),
                    doc_ids.tolist(),
                    ver_ids.tolist(),
                    range(start, start + len(texts)),
                    texts,
                    vectors,
                    strict=True,
                ):
                    copy.write_row(row)
            t1 = time.perf_counter()
            cur.execute(PUBLISH_SQL, [EMBEDDING_MODEL, DIMS])
        copy_s += t1 - t0
        publish_s += time.perf_counter() - t1
        done += len(texts)
        elapsed = time.perf_counter() - started
        log(
            f"loaded {done:,}/{spec.rows:,} chunks, {done / elapsed:,.0f}/s, "
            f"eta {(spec.rows - done) * elapsed / done:,.0f} s"
        )
    producer.join()
    timings["load_s"] = round(time.perf_counter() - started, 1)
    timings["copy_s"] = round(copy_s, 1)
    timings["insert_select_s"] = round(publish_s, 1)
    timings["load_rows_per_s"] = round(spec.rows / timings["load_s"])

    with conn.cursor() as cur:
        cur.execute("DROP TABLE bench_chunk_stage")
        with stopwatch(timings, "vacuum_analyze_s"):
            cur.execute("VACUUM (ANALYZE) kb_chunk")
        cur.execute(f"SET maintenance_work_mem = '{mem}'")
        cur.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
        timings["maintenance_work_mem"] = mem
        timings["max_parallel_maintenance_workers"] = workers
        timings["load_average_before_index_builds"] = load_average()
        notices: list[str] = []  # pgvector says so when the graph outgrows maintenance_work_mem
        conn.add_notice_handler(lambda diag: notices.append(str(diag.message_primary)))
        for name in INDEXES:
            log(f"building {name} ...")
            with stopwatch(timings, f"build_{name}_s"):
                cur.execute(index_defs[name])
            log(f"built {name} in {timings[f'build_{name}_s']} s")
        cur.execute("ANALYZE kb_chunk")
        meta = {
            "spec": asdict(spec),
            "tenants": [{k: t[k] for k in ("index", "org_id", "kb_id")} for t in tenants],
            "load": timings,
        }
        cur.execute(
            "INSERT INTO bench_meta VALUES ('corpus', %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [json.dumps(meta)],
        )
    timings["index_build_notices"] = notices
    timings["load_average_at_end"] = load_average()
    conn.close()
    return timings


def read_meta() -> dict[str, Any] | None:
    conn = raw_connection()
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('bench_meta') IS NOT NULL")
        exists = cur.fetchone()
        if not exists or not exists[0]:
            return None
        cur.execute("SELECT value FROM bench_meta WHERE key = 'corpus'")
        row = cur.fetchone()
    conn.close()
    return None if row is None else dict(row[0])


# --- measuring -------------------------------------------------------------------------------


# Every relation a search reads: the chunk table, its TOAST table and their indexes, the postings
# and the term statistics with theirs.
_SEARCHED_RELATIONS_SQL = """
WITH tables AS (
    SELECT oid FROM pg_class WHERE relname IN ('kb_chunk', 'kb_posting', 'kb_termstat')
    UNION SELECT reltoastrelid FROM pg_class WHERE relname = 'kb_chunk'
)
SELECT c.oid::regclass::text, pg_relation_size(c.oid)
FROM pg_class c
WHERE c.oid IN (SELECT oid FROM tables UNION SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM tables))
ORDER BY 1
"""


def prewarm_caches() -> dict[str, Any]:
    """Read every relation searches use into the OS page cache (pg_prewarm, 'read' mode), as on a
    server that has been answering for a while. Straight after building a 1M-row corpus, the
    postings rebuild had pushed much of the HNSW index out of the page cache: the first queries
    read it from disk (selective tenant, vector p95 79 ms where warm it is 14), and as the modes
    rotate per query the first to run pays that read, hybrid two times in three."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        cursor.execute(_SEARCHED_RELATIONS_SQL)
        relations = cursor.fetchall()
        for name, _ in relations:
            cursor.execute("SELECT pg_prewarm(%s::regclass, 'read')", [name])
    return {
        "mode": "read (OS page cache)",
        "mb": round(sum(size for _, size in relations) / 2**20, 1),
        "relations": len(relations),
        "seconds": round(time.perf_counter() - started, 1),
    }


def database_facts() -> dict[str, Any]:
    conn = raw_connection()
    facts: dict[str, Any] = {}
    with conn.cursor() as cur:
        cur.execute("SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector')")
        row = cur.fetchone()
        assert row is not None
        facts["postgres"], facts["pgvector"] = row[0].split(" on ")[0], row[1]
        for name in ("shared_buffers", "work_mem", "effective_cache_size", "jit", "max_parallel_workers_per_gather"):
            cur.execute(f"SHOW {name}")
            value = cur.fetchone()
            facts[name] = value[0] if value else None
    conn.close()
    return facts


def sizes(data_dir: Path) -> dict[str, Any]:
    conn = raw_connection()
    out: dict[str, Any] = {}
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT pg_relation_size('kb_chunk'), pg_table_size('kb_chunk'), pg_indexes_size('kb_chunk'),
                   pg_total_relation_size('kb_chunk'), pg_database_size(current_database()),
                   (SELECT count(*) FROM kb_chunk)
            """
        )
        row = cur.fetchone()
        assert row is not None
        heap, table, indexes, total, database, rows = row
        out.update(
            rows=rows,
            heap_mb=round(heap / 2**20, 1),
            table_incl_toast_mb=round(table / 2**20, 1),
            all_indexes_mb=round(indexes / 2**20, 1),
            total_mb=round(total / 2**20, 1),
            database_mb=round(database / 2**20, 1),
        )
        cur.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = 'kb_chunk'::regclass ORDER BY 2 DESC"
        )
        out["index_mb"] = {name: round(size / 2**20, 1) for name, size in cur.fetchall()}
        # What keyword search costs in storage: the postings (heap + primary key) and term rows.
        cur.execute(
            """
            SELECT pg_table_size('kb_posting'), pg_indexes_size('kb_posting'), pg_total_relation_size('kb_termstat'),
                   (SELECT count(*) FROM kb_posting), (SELECT count(*) FROM kb_chunk WHERE is_live)
            """
        )
        row = cur.fetchone()
        assert row is not None
        p_heap, p_index, termstat, postings, live = row
        out["postings"] = {
            "rows": postings,
            "per_live_chunk": round(postings / max(live, 1), 1),
            "heap_mb": round(p_heap / 2**20, 1),
            "index_mb": round(p_index / 2**20, 1),
            "termstat_mb": round(termstat / 2**20, 1),
            "bytes_per_live_chunk": round((p_heap + p_index) / max(live, 1)),
            "bytes_per_live_chunk_incl_termstat": round((p_heap + p_index + termstat) / max(live, 1)),
        }
    conn.close()
    du = subprocess.run(["du", "-sm", str(data_dir)], capture_output=True, text=True, check=False)
    out["data_dir_mb"] = int(du.stdout.split()[0]) if du.returncode == 0 and du.stdout else None
    return out


def has_postings(kb_id: int) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT FROM kb_posting p JOIN kb_termstat s ON s.id = p.term_id "
            "WHERE s.knowledge_base_id = %s)",
            [kb_id],
        )
        row = cursor.fetchone()
        return bool(row and row[0])


def tenant_rows(kb_id: int) -> int:
    from kb.models import Chunk

    return Chunk.objects.filter(knowledge_base_id=kb_id, is_live=True).count()


@contextmanager
def supplied_vectors(queries: list[Query]) -> Iterator[None]:
    """`embed_query` returns each query's precomputed vector: retrieval timings are the database's."""
    table = {q.text: q.vector for q in queries}

    def lookup(text: str, *, model: str, timeout: float = 0.0) -> list[float]:
        return table[text]

    with mock.patch("kb.embedding.embed_query", lookup):
        yield


# Exhaustive Okapi BM25, the reference for the selector's postings search: every live chunk of the
# tenant matching any query term (GIN), each scored over all its query terms with the statistics
# kb.pipeline.index.term_stats keeps (the test suite checks they equal a recount). This is what
# the selector shipped before the postings (minus its ts_rank_cd pool, which cut recall).
EXACT_BM25_SQL = """
WITH collection AS MATERIALIZED (
    SELECT greatest(sum(live_chunks), 1)::float AS n,
           greatest(sum(live_lexemes)::float / greatest(sum(live_chunks), 1), 1) AS avgdl
    FROM kb_knowledgebase WHERE id = ANY(%(kbs)s)
),
df AS MATERIALIZED (
    SELECT s.lexeme, sum(s.chunks)::float AS n
    FROM (SELECT DISTINCT lexeme
          FROM unnest(tsvector_to_array(to_tsvector(%(config)s::regconfig, %(query)s))) AS lexeme) t
    JOIN kb_termstat s ON s.lexeme = t.lexeme AND s.knowledge_base_id = ANY(%(kbs)s)
    GROUP BY s.lexeme HAVING sum(s.chunks) > 0
),
q AS MATERIALIZED (
    SELECT array_to_string(array(SELECT quote_literal(lexeme) FROM df), ' | ')::tsquery AS tq
),
matches AS MATERIALIZED (
    SELECT c.id, c.search_vector FROM kb_chunk c, q
    WHERE c.knowledge_base_id = ANY(%(kbs)s) AND c.is_live AND q.tq <> ''::tsquery AND c.search_vector @@ q.tq
)
SELECT m.id,
       sum(
           ln(1 + (greatest(collection.n, df.n) - df.n + 0.5) / (df.n + 0.5))
           * (tf.tf * (%(k1)s + 1))
           / (tf.tf + %(k1)s * (1 - %(b)s + %(b)s * length(m.search_vector) / collection.avgdl))
       ) AS score
FROM matches m
CROSS JOIN collection
CROSS JOIN LATERAL unnest(m.search_vector) AS u(lexeme, positions, weights)
JOIN df ON df.lexeme = u.lexeme
CROSS JOIN LATERAL (SELECT coalesce(array_length(u.positions, 1), 1)::float AS tf) tf
GROUP BY m.id
ORDER BY score DESC, m.id
LIMIT %(limit)s
"""


def exact_bm25(kb: KnowledgeBase, query: str, limit: int) -> list[tuple[int, float]]:
    from django.db import connection

    from kb import keyword_search

    with connection.cursor() as cursor:
        cursor.execute(
            EXACT_BM25_SQL,
            {
                "config": kb.text_search_config,
                "query": query,
                "kbs": [kb.pk],
                "k1": keyword_search.BM25_K1,
                "b": keyword_search.BM25_B,
                "limit": limit,
            },
        )
        return [(row[0], float(row[1])) for row in cursor.fetchall()]


def _recall(found: list[tuple[int, float]], exact: list[tuple[int, float]], k: int) -> float:
    """Share of the exact top k found in the top k; a chunk tied with the exact k-th score counts."""
    if not exact:
        return 1.0
    truth = exact[:k]
    cutoff = truth[-1][1] - 1e-9
    return min(1.0, sum(1 for _, score in found[:k] if score >= cutoff) / len(truth))


def bench_keyword(kb: KnowledgeBase, queries: list[Query]) -> dict[str, Any]:
    """The selector's postings BM25 against exhaustive BM25: recall@10/@50, scores, latency of both.

    Also a draft's keyword search: a draft that replaces one of the tenant's ten documents by an
    identical new version (its ~10 % of chunks hidden from the postings and read from their
    tsvectors instead) must return what the live search returns, at a latency measured here.
    """
    from kb.keyword_search import keyword_candidates, keyword_scores
    from kb.models import Chunk, Document

    document = Document.objects.filter(knowledge_base=kb).order_by("pk").first()
    assert document is not None and document.live_version_id is not None
    hidden = list(Chunk.objects.filter(version_id=document.live_version_id).values_list("pk", flat=True))
    r10: list[float] = []
    r50: list[float] = []
    same_scores = draft_same = 0
    times: dict[str, list[float]] = {"postings": [], "exhaustive": [], "draft": []}
    for q in queries:
        t0 = time.perf_counter()
        found = keyword_candidates([kb], q.text, POOL)
        t1 = time.perf_counter()
        exact = exact_bm25(kb, q.text, POOL)
        t2 = time.perf_counter()
        draft = keyword_scores(
            config=kb.text_search_config,
            knowledge_base_ids=[kb.pk],
            query=q.text,
            limit=POOL,
            hidden=hidden,
            staged=[document.live_version_id],
        )
        t3 = time.perf_counter()
        times["postings"].append((t1 - t0) * 1000)
        times["exhaustive"].append((t2 - t1) * 1000)
        times["draft"].append((t3 - t2) * 1000)
        r10.append(_recall(found, exact, 10))
        r50.append(_recall(found, exact, POOL))
        exact_by_id = dict(exact)
        same_scores += all(abs(exact_by_id[c] - s) < 1e-6 for c, s in found if c in exact_by_id)
        draft_same += [round(s, 6) for _, s in draft] == [round(s, 6) for _, s in found]
    return {
        "queries": len(queries),
        "recall_at_10": round(statistics.fmean(r10), 4),
        "recall_at_10_min": round(min(r10), 4),
        "recall_at_50": round(statistics.fmean(r50), 4),
        "scores_equal_exhaustive": same_scores,
        "draft_hidden_chunks": len(hidden),
        "draft_same_as_live": draft_same,
        "ms": {name: summary(values) for name, values in times.items()},
    }


def bench_draft_search(kb: KnowledgeBase, queries: list[Query]) -> dict[str, Any]:
    """A draft identical to the live release (every live version), searched as the draft through
    `chunk_search` (vector and hybrid), against the live search of the same query: latency, and
    how many results are the same chunks in the same order."""
    from kb.models import Document
    from kb.selectors import chunk_search

    versions = sorted(
        Document.objects.filter(knowledge_base=kb, live_version__isnull=False).values_list("live_version_id", flat=True)
    )
    out: dict[str, Any] = {"versions": len(versions), "queries": len(queries)}
    for mode in ("vector", "hybrid"):
        times: list[float] = []
        same = 0
        for q in queries:
            live = chunk_search(knowledge_bases=[kb], query=q.text, limit=LIMIT, mode=mode)
            t0 = time.perf_counter()
            draft = chunk_search(knowledge_bases=[kb], query=q.text, limit=LIMIT, mode=mode, versions=versions)
            times.append((time.perf_counter() - t0) * 1000)
            same += [h.chunk_id for h in draft] == [h.chunk_id for h in live]
        out[mode] = {**summary(times), "same_as_live": same}
    return out


@contextmanager
def statement_timeout(seconds: float) -> Iterator[None]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = {int(seconds * 1000)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")


@dataclass(frozen=True)
class Mode:
    label: str
    mode: str  # chunk_search's mode


def bench_latency(kb: KnowledgeBase, queries: list[Query], warmup: int, modes: list[Mode]) -> dict[str, Any]:
    """chunk_search per mode; modes rotate per query so no mode always runs on a cold cache."""
    from kb.selectors import chunk_search

    times: dict[str, list[float]] = {m.label: [] for m in modes}
    found: dict[str, list[int]] = {m.label: [] for m in modes}
    for i, q in enumerate(queries):
        shift = i % len(modes)
        for m in modes[shift:] + modes[:shift]:
            t0 = time.perf_counter()
            hits = chunk_search(knowledge_bases=[kb], query=q.text, limit=LIMIT, mode=m.mode)
            ms = (time.perf_counter() - t0) * 1000
            if i >= warmup:
                times[m.label].append(ms)
                found[m.label].append(len(hits))
    return {
        m.label: {**summary(times[m.label]), "mean_hits": round(statistics.fmean(found[m.label]), 2)} for m in modes
    }


def _timed(marks: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, adding the milliseconds of each call to `marks[name]` and its end to `marks[name + "_done_at"]`."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            marks[name] = marks.get(name, 0.0) + (time.perf_counter() - t0) * 1000
            marks[name + "_done_at"] = time.perf_counter()

    return wrapper


HYBRID_PARTS = ("total", "keyword", "vector", "retrievers", "match_ranking", "after")


def bench_hybrid_parts(kb: KnowledgeBase, queries: list[Query], warmup: int) -> dict[str, Any]:
    """Where a hybrid search's time goes, per search: the keyword query (on the request's
    connection), the vector query (`vector`: sent beside it, kb.search_beside, the wait for its
    rows after the keyword query; or run after it, its whole time), both done (`retrievers`, from
    the start of chunk_search), match ranking (its statement and features), and `after` (fusing,
    loading the returned rows, dropping duplicates, the commit)."""
    import kb.selectors as selectors
    from kb import match_ranking

    marks: dict[str, float] = {}
    real_keyword, real_vector, real_beside, real_rerank = (
        selectors.keyword_candidates,
        selectors._vector_candidates,
        selectors._VectorSearchBeside.result,
        match_ranking.rerank,
    )

    rows: list[dict[str, float]] = []
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(selectors, "keyword_candidates", _timed(marks, "keyword", real_keyword)))
        stack.enter_context(mock.patch.object(selectors, "_vector_candidates", _timed(marks, "vector", real_vector)))
        stack.enter_context(
            mock.patch.object(selectors._VectorSearchBeside, "result", _timed(marks, "vector", real_beside))
        )
        stack.enter_context(mock.patch.object(match_ranking, "rerank", _timed(marks, "match_ranking", real_rerank)))
        for i, q in enumerate(queries):
            marks.clear()
            t0 = time.perf_counter()
            selectors.chunk_search(knowledge_bases=[kb], query=q.text, limit=LIMIT, mode="hybrid")
            total = (time.perf_counter() - t0) * 1000
            if i < warmup or "match_ranking" not in marks:
                continue
            retrievers = (max(marks["keyword_done_at"], marks["vector_done_at"]) - t0) * 1000
            rows.append(
                {
                    "total": total,
                    "keyword": marks["keyword"],
                    "vector": marks["vector"],
                    "retrievers": retrievers,
                    "match_ranking": marks["match_ranking"],
                    "after": total - retrievers - marks["match_ranking"],
                }
            )
    return {"searches": len(rows), **{part: summary([r[part] for r in rows]) for part in HYBRID_PARTS}}


def captured_vector_sql(kb: KnowledgeBase, q: Query) -> tuple[list[int], str]:
    """The selector's HNSW result ids, and the exact SELECT it ran (to re-run with other settings)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from kb.selectors import _vector_candidates

    with CaptureQueriesContext(connection) as ctx:
        ids = [cid for cid, _ in _vector_candidates([kb], q.text, POOL)]
    (sql,) = [c["sql"] for c in ctx.captured_queries if "ORDER BY" in c["sql"] and "<=>" in c["sql"]]
    # The scan settings go in the same execute, before the SELECT: only the SELECT is re-run.
    return ids, sql.rsplit(";", 1)[-1]


def run_with(settings: list[str], sql: str) -> tuple[list[int], float]:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        for statement in settings:
            cursor.execute(statement)
        t0 = time.perf_counter()
        cursor.execute(sql)
        rows = cursor.fetchall()
        ms = (time.perf_counter() - t0) * 1000
    return [r[0] for r in rows], ms


SELECTOR_EF = max(40, min(1000, POOL * 2))
SELECTOR_SETTINGS = ["SET LOCAL hnsw.iterative_scan = relaxed_order", f"SET LOCAL hnsw.ef_search = {SELECTOR_EF}"]
# With sorting disabled the only plan left for ORDER BY distance is the HNSW index scan: this shows
# what the index returns under a filter the planner would otherwise answer exactly (small tenants).
FORCE_HNSW = "SET LOCAL enable_sort = off"
VARIANTS: dict[str, list[str]] = {
    "selector (relaxed_order, ef 100)": SELECTOR_SETTINGS,  # what kb.selectors._vector_candidates sets
    "strict_order, ef 100": [
        "SET LOCAL hnsw.iterative_scan = strict_order",
        f"SET LOCAL hnsw.ef_search = {SELECTOR_EF}",
    ],
    "iterative off, ef 100": ["SET LOCAL hnsw.iterative_scan = off", f"SET LOCAL hnsw.ef_search = {SELECTOR_EF}"],
    "iterative off, ef 1000": ["SET LOCAL hnsw.iterative_scan = off", "SET LOCAL hnsw.ef_search = 1000"],
    "HNSW forced: relaxed_order, ef 100": [*SELECTOR_SETTINGS, FORCE_HNSW],
    "HNSW forced: iterative off, ef 100": [
        "SET LOCAL hnsw.iterative_scan = off",
        f"SET LOCAL hnsw.ef_search = {SELECTOR_EF}",
        FORCE_HNSW,
    ],
}
EXACT = ["SET LOCAL enable_indexscan = off"]  # no HNSW: the filter first, then every distance


def plan_uses_hnsw(settings: list[str], sql: str) -> bool:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        for statement in settings:
            cursor.execute(statement)
        cursor.execute("EXPLAIN " + sql)
        return any("chunk_embedding_hnsw" in row[0] for row in cursor.fetchall())


def bench_recall(kb: KnowledgeBase, queries: list[Query]) -> dict[str, Any]:
    """Recall@10/@50 of HNSW variants against an exact scan under the same tenant filter."""
    stats: dict[str, dict[str, list[float]]] = {
        v: {"rows": [], "r10": [], "r50": [], "ms": []} for v in [*VARIANTS, "exact"]
    }
    from django.db import connection, transaction

    from kb.models import KnowledgeBase
    from kb.selectors import _VECTOR_SCAN_SETTINGS_SQL, _vector_scan_settings

    # What kb.selectors._vector_candidates sets for this tenant: exact search when it is a sliver.
    with transaction.atomic(), connection.cursor() as cursor:
        live_chunks = KnowledgeBase.objects.get(pk=kb.pk).live_chunks
        cursor.execute(_VECTOR_SCAN_SETTINGS_SQL, _vector_scan_settings(live_chunks, POOL))
        cursor.execute("SELECT current_setting('enable_indexscan')")
        small = cursor.fetchone()[0] == "off"
    selector_settings = [*EXACT, *SELECTOR_SETTINGS] if small else SELECTOR_SETTINGS
    variants = {**VARIANTS, "selector (relaxed_order, ef 100)": selector_settings}
    selector_agrees = 0
    for q in queries:
        selector_ids, sql = captured_vector_sql(kb, q)
        exact, exact_ms = run_with(EXACT, sql)
        stats["exact"]["ms"].append(exact_ms)
        stats["exact"]["rows"].append(len(exact))
        top10, top50 = set(exact[:10]), set(exact[:POOL])
        for name, settings in variants.items():
            ids, ms = run_with(settings, sql)
            if settings is selector_settings:
                selector_agrees += set(ids) == set(selector_ids)
            st = stats[name]
            st["rows"].append(len(ids))
            st["ms"].append(ms)
            # The selector sorts its pool exactly, so a true top-10 row anywhere in the pool ends in its top 10.
            st["r10"].append(len(top10 & set(ids)) / max(1, len(top10)))
            st["r50"].append(len(top50 & set(ids)) / max(1, len(top50)))
        stats["exact"]["r10"].append(1.0)
        stats["exact"]["r50"].append(1.0)
    _, sql = captured_vector_sql(kb, queries[0])
    out: dict[str, Any] = {}
    for name, st in stats.items():
        out[name] = {
            "plan_uses_hnsw": plan_uses_hnsw(variants.get(name, EXACT), sql),
            "rows_returned_mean": round(statistics.fmean(st["rows"]), 1),
            "rows_returned_min": int(min(st["rows"])),
            "recall_at_10": round(statistics.fmean(st["r10"]), 4),
            "recall_at_50": round(statistics.fmean(st["r50"]), 4),
            "sql_ms": summary(st["ms"]),
        }
    out["selector_matches_variant_share"] = round(selector_agrees / len(queries), 3)
    return out


def explain(kb: KnowledgeBase, q: Query, timeout_s: float) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of the SQL the selectors run for one query, and of exhaustive BM25.

    A statement that outlives `timeout_s` is shown with its plan only (EXPLAIN without ANALYZE).
    """
    from django.db import OperationalError, connection, transaction
    from django.test.utils import CaptureQueriesContext

    from kb.keyword_search import keyword_candidates

    _, vector_sql = captured_vector_sql(kb, q)
    # A cancelled statement is captured all the same: Django logs a query whether or not it failed.
    with CaptureQueriesContext(connection) as ctx, statement_timeout(timeout_s), suppress(OperationalError):
        keyword_candidates([kb], q.text, POOL)
    with CaptureQueriesContext(connection) as exact_ctx:
        exact_bm25(kb, q.text, POOL)
    plans: dict[str, Any] = {"query": q.text}
    for name, settings, sql in (
        ("vector", SELECTOR_SETTINGS, vector_sql),
        ("keyword", [], _the_keyword_sql(ctx.captured_queries)),
        ("keyword (exhaustive BM25)", [], _the_keyword_sql(exact_ctx.captured_queries)),
    ):
        try:
            with statement_timeout(timeout_s), transaction.atomic(), connection.cursor() as cursor:
                for statement in settings:
                    cursor.execute(statement)
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                plans[name] = [r[0] for r in cursor.fetchall()]
        except OperationalError:
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + sql)
                plans[name] = [f"(did not finish in {timeout_s:g} s: plan only)"] + [r[0] for r in cursor.fetchall()]
    return plans


def _the_keyword_sql(captured: list[dict[str, Any]]) -> str:
    (sql,) = [c["sql"] for c in captured if "to_tsvector" in c["sql"]]
    return str(sql)


# Before the first token: the question stored (conversation + message, after reading the bot's
# knowledge bases and starting the query embedding in the background), retrieval in the database
# (with fusion and the chunks loaded), the wait for the query embedding where it was not done yet,
# hits widened to passages, the prompt, and everything else (Python). `embedding` is how long the
# background embedding took: it overlaps the writes and the keyword query, so it is not part of
# the sum.
OVERHEAD_PARTS = (
    "total",
    "db_writes",
    "retrieval_db",
    "embedding_wait",
    "passages",
    "prompt",
    "other",
    "embedding",
)


def bench_overhead(kb: KnowledgeBase, queries: list[Query], warmup: int) -> dict[str, Any]:
    """`chat_answer_events` until it calls the model: everything but the model."""
    import chat.rag.answer as rag_answer
    import chat.rag.retrieve as rag_retrieve
    import chat.services as chat_services
    import kb.embedding as kb_embedding
    from accounts.models import Organization
    from chat.models import Chatbot
    from chat.rag.generate import CompletionStream
    from kb import embedding
    from kb.selectors import _VectorSearchBeside

    organization = Organization.objects.get(pk=kb.organization_id)
    chatbot: Chatbot = Chatbot.objects.filter(
        organization=organization, slug="bench-bot"
    ).first() or chat_services.chatbot_create(
        organization=organization, name="Bench bot", knowledge_bases=[kb], created_by=None
    )
    marks: dict[str, float] = {}
    real_wait_until_sent = _VectorSearchBeside.wait_until_sent
    real_embed, real_vector, real_search, real_passages, real_build = (
        embedding.embed_query,
        kb_embedding.QueryVectors.vector,
        rag_retrieve.chunk_search,
        rag_retrieve.hits_to_passages,
        rag_answer.build_messages,
    )

    def fake_model(**kwargs: Any) -> CompletionStream:
        marks["model_called_at"] = time.perf_counter()
        return CompletionStream(pieces=iter(()))

    rows: list[dict[str, float]] = []
    reached_model = 0
    with ExitStack() as stack:
        stack.enter_context(mock.patch("kb.embedding.embed_query", _timed(marks, "embedding", real_embed)))
        # The request waits for the question's vector in QueryVectors.vector when it runs the
        # vector query itself, or until the vector query is on its way when it runs beside.
        stack.enter_context(
            mock.patch.object(kb_embedding.QueryVectors, "vector", _timed(marks, "embedding_wait", real_vector))
        )
        stack.enter_context(
            mock.patch.object(
                _VectorSearchBeside, "wait_until_sent", _timed(marks, "embedding_wait", real_wait_until_sent)
            )
        )
        stack.enter_context(mock.patch.object(rag_retrieve, "chunk_search", _timed(marks, "retrieval", real_search)))
        stack.enter_context(
            mock.patch.object(rag_retrieve, "hits_to_passages", _timed(marks, "passages", real_passages))
        )
        stack.enter_context(mock.patch.object(rag_answer, "build_messages", _timed(marks, "prompt", real_build)))
        stack.enter_context(mock.patch("chat.rag.generate.stream_completion", fake_model))
        for i, q in enumerate(queries):
            marks.clear()
            t0 = time.perf_counter()
            for event in rag_answer.chat_answer_events(chatbot=_fresh(chatbot), question=q.text):
                if event["type"] == "start":  # the conversation and the question are stored
                    marks["writes"] = (time.perf_counter() - t0) * 1000
            if "model_called_at" not in marks:
                continue  # refused before the model (nothing relevant): not a first-token path
            if i < warmup:
                continue
            reached_model += 1
            total = (marks["model_called_at"] - t0) * 1000
            rows.append(
                {
                    "total": total,
                    "embedding": marks["embedding"],
                    "embedding_wait": marks["embedding_wait"],
                    "retrieval_db": marks["retrieval"] - marks["embedding_wait"],
                    "db_writes": marks["writes"],
                    "passages": marks["passages"],
                    "prompt": marks["prompt"],
                    "other": total - marks["writes"] - marks["retrieval"] - marks["passages"] - marks["prompt"],
                }
            )
    measured = len(queries) - warmup
    return {
        "questions": measured,
        "reached_model": reached_model,
        **{part: summary([r[part] for r in rows]) for part in OVERHEAD_PARTS},
    }


def _fresh(chatbot: Chatbot) -> Chatbot:
    """The bot re-read per question, as a request would (its knowledge bases are not cached)."""
    from chat.models import Chatbot

    return Chatbot.objects.select_related("organization").get(pk=chatbot.pk)


# --- report ----------------------------------------------------------------------------------


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per tenant role, the figures issue 14 sets targets for (hybrid / vector <= 1.5 at p95,
    keyword recall@10 >= 0.97, overhead before the first token <= 100 ms p95 at 100k)."""
    out: dict[str, Any] = {}
    for role, r in results["tenants"].items():
        latency = r.get("latency", {})
        vector, keyword, hybrid = (latency.get(m, {}).get("p95") for m in ("vector", "keyword", "hybrid"))
        overhead = r.get("overhead") or {}
        out[role] = {
            "rows": r["rows"],
            "vector_p95_ms": vector,
            "keyword_p95_ms": keyword,
            "hybrid_p95_ms": hybrid,
            "hybrid_over_vector_p95": round(hybrid / vector, 3) if vector and hybrid else None,
            "keyword_recall_at_10": (r.get("keyword") or {}).get("recall_at_10"),
            "vector_recall_at_10": (r.get("recall") or {})
            .get("selector (relaxed_order, ef 100)", {})
            .get("recall_at_10"),
            "overhead_p95_ms": (overhead.get("total") or {}).get("p95"),
            "load_average_before": r.get("load_average_before"),
        }
    return out


def print_tables(results: dict[str, Any]) -> None:
    rows = results["corpus"]["rows"]
    print(f"\n=== retrieval, {rows:,} chunks ({results['corpus']['tenants']} tenants) ===")
    print(f"{'tenant':<12}{'rows':>9}  {'mode':<10}{'p50 ms':>9}{'p95 ms':>9}{'mean':>9}{'hits':>6}")
    for role, r in results["tenants"].items():
        for mode, s in r.get("latency", {}).items():
            print(
                f"{role:<12}{r['rows']:>9,}  {mode:<10}{s['p50']:>9.1f}{s['p95']:>9.1f}"
                f"{s['mean']:>9.1f}{s['mean_hits']:>6.1f}"
            )
    for role, r in results["tenants"].items():
        k = r.get("keyword")
        if k:
            print(
                f"keyword, {role}: recall@10 {k['recall_at_10']:.3f} (min {k['recall_at_10_min']:.2f}), "
                f"@50 {k['recall_at_50']:.3f} vs exhaustive BM25; postings p50/p95 "
                f"{k['ms']['postings']['p50']:.1f}/{k['ms']['postings']['p95']:.1f} ms, exhaustive "
                f"{k['ms']['exhaustive']['p50']:.1f}/{k['ms']['exhaustive']['p95']:.1f} ms, draft "
                f"{k['ms']['draft']['p50']:.1f}/{k['ms']['draft']['p95']:.1f} ms "
                f"({k['draft_same_as_live']}/{k['queries']} draft results identical to live)"
            )
        d = r.get("draft_search")
        if d:
            print(
                f"draft search, {role} (a draft identical to live, {d['versions']} versions): "
                + ", ".join(
                    f"{mode} p50/p95 {d[mode]['p50']:.1f}/{d[mode]['p95']:.1f} ms "
                    f"({d[mode]['same_as_live']}/{d['queries']} same as live)"
                    for mode in ("vector", "hybrid")
                )
            )
    print(f"\nsummary: {json.dumps(results.get('summary', {}), indent=1)}")
    print(
        f"\n{'tenant':<12}{'vector search variant':<36}{'hnsw':>5}{'rows avg':>9}{'min':>5}{'R@10':>7}{'R@50':>7}"
        f"{'p50 ms':>9}{'p95 ms':>9}"
    )
    for role, r in results["tenants"].items():
        for name, s in r.get("recall", {}).items():
            if isinstance(s, dict):
                print(
                    f"{role:<12}{name:<36}{'yes' if s['plan_uses_hnsw'] else 'no':>5}{s['rows_returned_mean']:>9.1f}"
                    f"{s['rows_returned_min']:>5}{s['recall_at_10']:>7.3f}{s['recall_at_50']:>7.3f}"
                    f"{s['sql_ms']['p50']:>9.1f}{s['sql_ms']['p95']:>9.1f}"
                )
    for role, r in results["tenants"].items():
        h = r.get("hybrid_parts")
        if h:
            print(f"\nhybrid search, {role} tenant, by part ({h['searches']} searches)")
            for part in HYBRID_PARTS:
                print(f"  {part:<14}p50 {h[part]['p50']:>8.1f} ms   p95 {h[part]['p95']:>8.1f} ms")
    for role, r in results["tenants"].items():
        o = r.get("overhead")
        if not o or not o.get("reached_model"):
            continue
        print(f"\noverhead before the first token, {role} tenant ({o['reached_model']} questions reached the model)")
        for part in OVERHEAD_PARTS:
            print(f"  {part:<14}p50 {o[part]['p50']:>8.1f} ms   p95 {o[part]['p95']:>8.1f} ms")
    print(f"\nsizes: {json.dumps(results['sizes'])}")
    if results.get("load"):
        print(f"load: {json.dumps({k: v for k, v in results['load'].items() if not k.startswith('load_average')})}")


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="chunks in the synthetic corpus")
    parser.add_argument("--tenants", type=int, default=20, help="organisations (one knowledge base each)")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per tenant and mode")
    parser.add_argument("--warmup", type=int, default=20, help="untimed queries first")
    parser.add_argument("--recall-queries", type=int, default=None, help="queries for recall (default: --queries)")
    parser.add_argument("--overhead-questions", type=int, default=100, help="chat_answer_events runs per tenant")
    parser.add_argument(
        "--statement-timeout", type=float, default=30.0, help="seconds; longer EXPLAIN ANALYZE statements are cancelled"
    )
    parser.add_argument("--skip-load", action="store_true", help="reuse the corpus already in the bench database")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--roles", nargs="*", default=["selective", "large", "tiny"], choices=list(ROLE_WEIGHTS))
    parser.add_argument("--batch", type=int, default=20_000, help="rows per COPY batch")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--maintenance-work-mem", default="2GB")
    parser.add_argument("--parallel-workers", type=int, default=1, help="max_parallel_maintenance_workers")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    # Never the dev or test database: our own data folder, our own embedded server.
    if os.environ.get("DATABASE_URL"):
        raise SystemExit("Unset DATABASE_URL: this benchmark truncates tables and runs on its own embedded server.")
    os.environ.setdefault("GROUNDWORK_DATA_DIR", str(BENCH_DATA_DIR))
    data_dir = Path(os.environ["GROUNDWORK_DATA_DIR"]).resolve()
    if "bench" not in data_dir.name:
        raise SystemExit(f"GROUNDWORK_DATA_DIR must be a bench folder (its name containing 'bench'), not {data_dir}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)  # settings only name the embedded servers; they outlive this script
    django.setup()
    from django.core.management import call_command

    from kb.models import KnowledgeBase

    call_command("migrate", verbosity=0)  # the bench database follows the code it measures

    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": load_average(),
            "python": platform.python_version(),
        },
        "database": database_facts(),
    }

    meta = read_meta()
    if args.skip_load:
        if meta is None:
            raise SystemExit("No bench corpus to reuse: run without --skip-load first.")
        spec = CorpusSpec(**meta["spec"])
        if spec.rows != args.rows:
            raise SystemExit(f"The bench database holds a {spec.rows:,}-row corpus, not {args.rows:,}.")
        corpus = SyntheticCorpus(spec)
        results["load"] = {"reused": True, **meta.get("load", {})}
    else:
        spec = CorpusSpec.build(rows=args.rows, tenants=args.tenants, seed=args.seed)
        corpus = SyntheticCorpus(spec)
        log(f"loading {spec.rows:,} chunks, {spec.tenants} tenants, {spec.clusters} topics")
        results["load"] = load_corpus(
            spec, corpus, batch_size=args.batch, mem=args.maintenance_work_mem, workers=args.parallel_workers
        )
        meta = read_meta()
        assert meta is not None
    # BM25 statistics: the bulk load bypasses the services that keep them (a reused corpus got them
    # from the migration that introduced them, or from an earlier run).
    from kb.pipeline.index import term_stats

    stale = [
        kb
        for kb in KnowledgeBase.objects.filter(pk__in=[t["kb_id"] for t in meta["tenants"]])
        if kb.live_chunks != tenant_rows(kb.pk) or not has_postings(kb.pk)
    ]
    if stale:
        log(f"counting BM25 term statistics and postings of {len(stale)} knowledge bases")
        with stopwatch(results["load"], "term_stats_rebuild_s"):
            for kb in stale:
                term_stats.rebuild(kb)
    # Autovacuum would do it in its own time: index-only scans need the visibility map (a no-op
    # when nothing changed since the last run).
    with stopwatch(results["load"], "postings_vacuum_s"):
        conn = raw_connection()
        conn.execute("VACUUM (ANALYZE) kb_posting")
        conn.execute("VACUUM (ANALYZE) kb_termstat")
        conn.close()
    results["corpus"] = {**asdict(spec), "vocabulary": corpus.vocab_source, "vocabulary_size": len(corpus.vocab)}
    results["sizes"] = sizes(data_dir)
    results["prewarm"] = prewarm_caches()
    log(f"caches warmed: {results['prewarm']}")
    log(f"sizes: {results['sizes']}")

    kb_by_index = {t["index"]: t["kb_id"] for t in meta["tenants"]}
    recall_n = args.recall_queries or args.queries
    results["tenants"] = {}
    for role in args.roles:
        tenant = spec.roles[role]
        kb = KnowledgeBase.objects.get(pk=kb_by_index[tenant])
        entry: dict[str, Any] = {"tenant": tenant, "kb_id": kb.pk, "rows": tenant_rows(kb.pk)}
        entry["share"] = round(entry["rows"] / spec.rows, 4)
        results["tenants"][role] = entry
        queries = corpus.queries(tenant, args.warmup + args.queries)
        with supplied_vectors(queries):
            modes = [Mode("vector", "vector"), Mode("keyword", "keyword"), Mode("hybrid", "hybrid")]
            log(f"{role}: latency over {args.queries} queries ({entry['rows']:,} rows)")
            entry["load_average_before"] = load_average()
            entry["latency"] = bench_latency(kb, queries, args.warmup, modes)
            entry["hybrid_parts"] = bench_hybrid_parts(kb, queries, args.warmup)
            log(f"{role}: keyword recall against exhaustive BM25 over {recall_n} queries")
            entry["keyword"] = bench_keyword(kb, queries[args.warmup : args.warmup + recall_n])
            log(f"{role}: draft search over {recall_n} queries")
            entry["draft_search"] = bench_draft_search(kb, queries[args.warmup : args.warmup + recall_n])
            log(f"{role}: vector recall over {recall_n} queries")
            entry["recall"] = bench_recall(kb, queries[args.warmup : args.warmup + recall_n])
            entry["explain"] = explain(kb, queries[args.warmup], args.statement_timeout)
        if not args.skip_overhead:
            log(f"{role}: overhead before the first token over {args.overhead_questions} questions")
            questions = corpus.queries(tenant, 5 + args.overhead_questions, salt=1)
            entry["overhead"] = bench_overhead(kb, questions, warmup=5)
        entry["load_average_after"] = load_average()
        log(f"{role}: done")
    results["machine"]["load_average_at_end"] = load_average()
    results["summary"] = summarise(results)

    output = args.output or RESULTS_DIR / f"retrieval_{args.rows}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(output)
    print_tables(results)
    print(f"\nwritten to {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")


if __name__ == "__main__":
    main()
