"""FastAPI's static files and Starlette's FileResponse use pathsend by
themselves when the server announces it: nothing to change in the app.

    ketch static_app:app
"""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent

app = FastAPI()
app.mount("/static", StaticFiles(directory=HERE), name="static")


@app.get("/download")
async def download() -> FileResponse:
    return FileResponse(HERE / "static_app.py", filename="static_app.py")
