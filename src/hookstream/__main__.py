from __future__ import annotations

from hookstream.cli import main

main()
