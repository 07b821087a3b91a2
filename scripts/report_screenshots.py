"""Regenerate docs/img/report-*.png: real reports rendered by headless Chromium.

    python scripts/report_screenshots.py     (needs Debian's chromium; CI never runs it)
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LSTM = os.path.join(ROOT, "tests", "data", "lstm_gru_reference", "embedding_bilstm_tagger")
REPORTS = {
    "report-seed002": ["sample_weights/seed002_batch_state.keras", "-i",
                       "sample_weights/seed002_input.npy", "--sample", "3"],
    "report-lstm-tagger": [os.path.join(LSTM, "model.keras"), "-i",
                           os.path.join(LSTM, "input.npy"), "--sample", "1"],
}
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", "--window-size=1100,1500"]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in REPORTS.items():
            html = os.path.join(tmp, name + ".html")
            subprocess.run([sys.executable, "-m", "rnncli", "report", *args, "-o", html],
                           cwd=ROOT, check=True)
            png = os.path.join(ROOT, "docs", "img", name + ".png")
            subprocess.run([*CHROMIUM, f"--user-data-dir={tmp}/profile-{name}",
                            f"--screenshot={png}", "file://" + html], check=True,
                           stderr=subprocess.DEVNULL)
            print(png)


if __name__ == "__main__":
    main()
