"""Command line: the demo (main job on embedded defaults), migrations, case status and lists."""
