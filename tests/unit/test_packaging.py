"""riverbed's import names are its own: a user's models.py and app.py shadow nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_custom_model_from_a_users_models_py_next_to_an_app_py(tmp_path: Path) -> None:
    (tmp_path / "models.py").write_text(
        "from river import linear_model\n\n\ndef factory():\n"
        "    return linear_model.LogisticRegression()\n"
    )
    (tmp_path / "app.py").write_text("raise SystemExit('the user app.py was imported')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RIVERBED_", "PYTHONPATH"))}
    env.update(RIVERBED_MODEL="models:factory", RIVERBED_BROKER="127.0.0.1:1")
    res = subprocess.run([sys.executable, "-m", "riverbed", "worker"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    # The model resolved to the user's factory (else: "RIVERBED_MODEL=..."), riverbed's
    # own modules loaded (else: the user's app.py exits), and it went on to Kafka.
    assert res.returncode == 2, res.stderr
    assert "cannot reach Kafka at RIVERBED_BROKER=127.0.0.1:1" in res.stderr, res.stderr
