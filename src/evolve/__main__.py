from evolve.cli import app

app(prog_name="evolve")
