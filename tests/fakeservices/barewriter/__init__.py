"""A feature written the plain way: a Starlette router, no ``protect()``, its
own writes through the shared database layer. Shadow tests replay writes to it
and check that the registry alone keeps a dry run from committing."""
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, Router

from services.common import get_database
from services.registry import Service, in_dry_run


async def create(request: Request) -> JSONResponse:
    email = (await request.body()).decode()
    db = get_database()
    await db.run(db.create_user, email, "$2a$10$not-a-real-hash")
    return JSONResponse({"created": email, "dry_run": in_dry_run()})


SERVICE = Service(
    name="barewriter",
    prefixes=("/_standin/echo/bare",),
    app=Router(routes=[Route("/_standin/echo/bare/users", create, methods=["POST"])]),
    dry_run=True,
)
