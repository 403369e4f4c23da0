"""Only ``__main__`` turns an error into an exit status and a line (``EXIT_CODES``)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.__main__ import EXIT_CODES, exit_for, main
from gateway.audit import AuditStoreError, PruneError, PruneRefusal, ReceiptError
from gateway.audit.event import AuditUnavailableError
from gateway.credentials.store import CredentialError, CredentialRefusal, IdentityError
from gateway.infra.datafolder import DataFolderError, create_data_folder
from gateway.infra.sql import StorageError
from gateway.licences.store import LicenceError
from gateway.settings import SettingsError
from gateway.trustlist.service import AdminError, AdminRefusal, TrustStoreError
from gateway.web.workers import WorkersError
from registry import LoadError, LoadProblem, LoadReport, RegistryError, UnknownRegionError
from trust import ChangeError, NoteError, TrustError

pytestmark = pytest.mark.allow_blocking

ROOT = Path(__file__).resolve().parents[2]

EXAMPLES: dict[type[Exception], Callable[[], Exception]] = {
    SettingsError: lambda: SettingsError("clock_skew_s: expected an integer, got 'x'"),
    DataFolderError: lambda: DataFolderError("/srv/x is not a gateway data folder"),
    OSError: lambda: FileNotFoundError(2, "No such file or directory", "/srv/in.json"),
    IdentityError: lambda: IdentityError("client 'w' already exists"),
    CredentialError: lambda: CredentialError(CredentialRefusal.UNKNOWN, "not a token"),
    AdminError: lambda: AdminError(AdminRefusal.NOT_FOUND, "no proposal 'p-1'"),
    TrustStoreError: lambda: TrustStoreError("database is locked"),
    ChangeError: lambda: ChangeError(["unknown region 999999", "kid is empty"]),
    TrustError: lambda: NoteError("malformed note"),
    LicenceError: lambda: LicenceError("the licence store failed"),
    RegistryError: lambda: UnknownRegionError("999999", "matter"),
    AuditUnavailableError: lambda: AuditUnavailableError("audit record not written: full"),
    AuditStoreError: lambda: AuditStoreError("no audit log in /srv/x"),
    StorageError: lambda: StorageError("database is locked"),
    ReceiptError: lambda: ReceiptError("entry 7 is not in the signed tree"),
    WorkersError: lambda: WorkersError("workers = 2 needs redis_url: replay protection, rate "
                                       "limits and console sessions are shared there"),
    PruneError: lambda: PruneError(PruneRefusal.OWN_PROPOSAL, "approved by another auditor"),
    ValueError: lambda: ValueError("give the changes with --file FILE or --change JSON"),
}
"""An error of each kind ``EXIT_CODES`` lists, as a command raises it."""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A new data folder."""
    path = tmp_path / "data"
    create_data_folder(path)
    return path


def test_every_listed_error_has_an_example() -> None:
    """The table and this test change together."""
    assert set(EXIT_CODES) == set(EXAMPLES)


@pytest.mark.parametrize("kind", list(EXAMPLES), ids=lambda k: k.__name__)
def test_each_error_ends_a_command_with_its_status_and_one_line(
        kind: type[Exception], folder: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A command that raises gets the table's status and ``ecert-gateway COMMAND: PREFIX
    REASON`` on standard error, one line."""
    error = EXAMPLES[kind]()

    def failing(*_: object) -> int:
        raise error

    monkeypatch.setattr("gateway.cli.registry._coverage", failing)
    code, prefix = EXIT_CODES[kind]
    assert code == main(["registry", "coverage", "--data-dir", str(folder)])
    reason = "/srv/in.json: No such file or directory" if kind is OSError else str(error)
    assert [f"ecert-gateway registry coverage: {prefix}{reason}"] \
        == capsys.readouterr().err.splitlines()


def test_the_nearest_listed_class_counts() -> None:
    """A ``ChangeError`` is a ``TrustError``, but says that a change was refused."""
    assert (1, "change refused: unknown region 999999; kid is empty") \
        == exit_for(EXAMPLES[ChangeError]())


def test_a_message_of_many_lines_is_cut_to_its_first() -> None:
    """A registry file with problems: the first line (the count) only; the command prints
    the problems themselves."""
    report = LoadReport.of([LoadProblem("a.csv", 3, "bad code"), LoadProblem("b.csv", 4, "x")])
    code, line = exit_for(LoadError(report)) or (0, "")
    assert (1, "2 problem(s) loading registry data:") == (code, line)


def test_an_unlisted_error_is_a_bug_and_keeps_its_traceback(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything else is not turned into a quiet exit status."""

    def failing(*_: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr("gateway.cli.registry._coverage", failing)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["registry", "coverage", "--data-dir", str(folder)])


def test_a_missing_licence_file_is_named_without_errno(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``licences import`` printed ``[Errno 2] No such file or directory: '...'``; now the
    file and the reason, as every command does."""
    missing = tmp_path / "licences.jsonl"
    assert 1 == main(["licences", "import", str(missing), "--data-dir", str(folder)])
    assert [f"ecert-gateway licences import: {missing}: No such file or directory"] \
        == capsys.readouterr().err.splitlines()


def test_audit_failures_name_the_command(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``audit`` printed ``error: ...``; now ``ecert-gateway audit stats: ...``, as every
    other command."""
    assert 1 == main(["audit", "stats", "--data-dir", str(folder)])
    assert [f"ecert-gateway audit stats: no audit log in {folder}"] \
        == capsys.readouterr().err.splitlines()


def _is_exit_status(node: ast.AST) -> bool:
    """``return 1``: a command answering with an exit status of its own."""
    return (isinstance(node, ast.Return) and isinstance(node.value, ast.Constant)
            and type(node.value.value) is int)


def _handlers_that_answer(path: Path) -> list[int]:
    """Lines of ``except`` clauses that turn the error into an exit status themselves."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [handler.lineno for handler in ast.walk(tree)
            if isinstance(handler, ast.ExceptHandler)
            and any(_is_exit_status(node) for node in ast.walk(handler))]


@pytest.mark.parametrize("module", sorted(
    p.name for p in (ROOT / "gateway" / "cli").glob("*.py")))
def test_commands_leave_errors_to_main(module: str) -> None:
    """No command module catches an error to return an exit status itself."""
    assert [] == _handlers_that_answer(ROOT / "gateway" / "cli" / module)
