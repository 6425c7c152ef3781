"""Import rate: a generated CSV streamed through POST /imports into SQLite.

    .venv/bin/python -m bench.import_rate [--rows 100000]

Generates ROWS prospects (about 2% with a bad email, 3% repeating an earlier person's email:
matched, nothing left to fill, "unchanged"; phone numbers spelled "+1 (415) 200-0001", stored
as E.164), then streams the file to the prospecting app in this process (httpx's ASGI transport:
no network, the body still arrives in 64 KiB chunks) with a fresh migrated SQLite database,
three reps (round robin) and a four-criteria ICP (every row scored). Prints rows/s for the
first run and for a re-run of the same file (all "unchanged"), and the peak RSS, which stays
flat as ROWS grows because the import holds one 500-row batch at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import resource
import tempfile
import time
from pathlib import Path

import httpx

from services.prospecting.app import create_app
from services.prospecting.import_cli import upload
from shared.migrations import upgrade
from shared.settings import Settings

KEY = "bench-key"
ICP = {
    "criteria": [
        {"name": "senior", "field": "title", "kind": "keywords", "values": ["cto", "vp"], "weight": 40},
        {"name": "software", "field": "industry", "kind": "in", "values": ["software"], "weight": 20},
        {"name": "mid-market", "field": "company_size", "kind": "range",
         "ranges": [{"min": 50, "max": 1000}], "weight": 20},
        {"name": "dach", "field": "country", "kind": "in", "values": ["DE", "AT", "CH"], "weight": 20},
    ]
}  # fmt: skip
TITLES = ["CTO", "VP Sales", "Engineer", "Head of Ops", "Analyst"]
INDUSTRIES = ["software", "retail", "finance", "health"]
COUNTRIES = ["DE", "US", "AT", "FR", "GB"]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with path.open("w") as f:
        f.write(
            "first_name,last_name,email,phone,company,title,industry,company_size,country,plan\n"
        )
        for i in range(rows):
            email = f"person{i}@example.com"
            company = f"Company {i % 5000}"
            r = rnd.random()
            if r < 0.02:
                email = f"person{i}-at-example.com"
            elif r < 0.05 and i:
                email, company = f"person{rnd.randrange(i)}@example.com", f"Later {i}"
            phone = f"(415) {200 + i // 10000:03d}-{i % 10000:04d}"  # US national spelling
            f.write(
                f"P{i},Q{i},{email},+1 {phone},{company},{rnd.choice(TITLES)},"
                f"{rnd.choice(INDUSTRIES)},{rnd.randrange(1, 5000)},{rnd.choice(COUNTRIES)},"
                f"{rnd.choice(['free', 'pro'])}\n"
            )


async def run(rows: int) -> None:
    from temporalio.testing import WorkflowEnvironment

    from tests.support.fixtures import binary

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        csv_path = data / "people.csv"
        generate(csv_path, rows)
        settings = Settings(
            environment="test",
            data_dir=data,
            api_keys=KEY,
            prospecting_database_url=f"sqlite+aiosqlite:///{data / 'prospecting.db'}",
        )
        await asyncio.to_thread(upgrade, settings, "prospecting")
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=binary("temporal"),
            dev_server_extra_args=["--log-level", "error"],
        )
        try:
            app = create_app(settings, temporal_client=env.client)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://bench", headers={"X-API-Key": KEY}
                ) as http:
                    for name in ("rita", "rob", "ray"):
                        body = {"name": name, "email": f"{name}@example.com"}
                        (await http.post("/reps", json=body)).raise_for_status()
                    (await http.put("/icp", json=ICP)).raise_for_status()
                size = csv_path.stat().st_size / 1e6
                print(f"rows={rows} file={size:.1f}MB database=sqlite batch=500")
                for label in ("first run", "re-run"):
                    started = time.perf_counter()
                    report = await upload(
                        csv_path, url="http://bench", api_key=KEY, err=io.StringIO(),
                        transport=transport,
                    )  # fmt: skip
                    seconds = time.perf_counter() - started
                    counts = {k: report[k] for k in ("created", "merged", "unchanged", "refused")}
                    print(f"{label}: {seconds:.1f}s {rows / seconds:,.0f} rows/s {counts}")
        finally:
            await env.shutdown()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak_rss={peak:.0f}MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    asyncio.run(run(parser.parse_args().rows))


if __name__ == "__main__":
    main()
