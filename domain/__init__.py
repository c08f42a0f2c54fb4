"""Pure, deterministic building blocks shared by workflows, activities and the CLI.

Nothing here does I/O or reads the clock, so workflow code may import it through
`workflow.unsafe.imports_passed_through()`.
"""
