from aolo.cli import app

app()
