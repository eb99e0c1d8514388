#!/usr/bin/env python3
"""The load suite again, with every request going through the thread pool
and the modification queue (quick_commands_inline = false): the path encrypted
requests take, which the status commands otherwise skip."""

import os
import runpy

os.environ["RAIDA_LOAD_THROUGH_POOL"] = "1"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_load.py"),
               run_name="__main__")
