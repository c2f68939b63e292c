"""Regenerate migration 0001 from the models while Tideflow is unreleased.

Once a release ships, migrations become append-only and this script is retired.
"""

from __future__ import annotations

import re
import subprocess
import tempfile

from alembic import command

from tideflow.store.db import make_engine
from tideflow.store.migrate import MIGRATIONS, alembic_config

versions = MIGRATIONS / "versions"
for old in versions.glob("0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as tmp:
    engine = make_engine(f"sqlite:///{tmp}/empty.db")
    cfg = alembic_config(engine)
    command.revision(cfg, message="initial", autogenerate=True, rev_id="0001")
generated = next(versions.glob("0001_*.py"))
text = generated.read_text()
text = re.sub(r"Create Date: .*", "Create Date: (regenerated)", text)
target = versions / "0001_initial.py"
generated.unlink()
target.write_text(text)
subprocess.run(["ruff", "format", "-q", str(target)], check=False)
subprocess.run(["ruff", "check", "-q", "--fix", str(target)], check=False)
print(f"wrote {target}")
