"""The ``portal-cli`` console script."""

from portal.cli.commands import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
