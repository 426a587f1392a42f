"""A Starlette application served by ketch.

    ketch app:app     # from this folder (see README.md)

GET  /               a greeting, and when the app started (set by lifespan)
GET  /items/{id}     an item by its id
POST /items          creates an item from a JSON body {"name": ...}
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    # what is yielded here is in every request's `request.state`
    yield {"started": time.time(), "items": {}}


async def homepage(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "starlette", "started": request.state.started})


async def get_item(request: Request) -> JSONResponse:
    item = request.state.items.get(request.path_params["item_id"])
    if item is None:
        return JSONResponse({"error": "no such item"}, status_code=404)
    return JSONResponse(item)


async def create_item(request: Request) -> JSONResponse:
    data = await request.json()
    items = request.state.items
    item = {"id": len(items) + 1, "name": str(data["name"])}
    items[item["id"]] = item
    return JSONResponse(item, status_code=201)


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/items/{item_id:int}", get_item),
        Route("/items", create_item, methods=["POST"]),
    ],
    lifespan=lifespan,
)
