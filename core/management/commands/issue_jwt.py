"""`manage.py issue_jwt USER_ID [--email E] [--ttl SECONDS]`: print a Bearer token for local use.

It prints the token alone on one line, so `TOKEN=$(./manage.py issue_jwt alice)` works. It only
signs with JWT_SECRET (HS*); with an asymmetric issuer the product's login issues tokens.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.jwt_tokens import JWTConfigurationError, issue_jwt


class Command(BaseCommand):
    help = "Print a signed Bearer JWT for USER_ID (needs an HS* JWT_SECRET)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user_id", help="Value of the user claim (JWT_USER_CLAIM, e.g. sub).")
        parser.add_argument("--email", default=None, help="Value of the email claim.")
        parser.add_argument(
            "--ttl", type=int, default=3600, help="Lifetime in seconds (default 3600)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            token = issue_jwt(
                options["user_id"], email=options["email"], ttl_seconds=options["ttl"]
            )
        except (JWTConfigurationError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(token)
