"""The study database's tables (SQLAlchemy 2 ORM), the same on SQLite and PostgreSQL.

Idempotency is enforced by the database, not by the code: one response per assignment (``UNIQUE(assignment_id)``),
one assignment per (participant, phase, trial index), one participant number per study.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTC(TypeDecorator):
    """A timezone-aware UTC timestamp on both back-ends (SQLite stores naive values)."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)
    description: Mapped[str] = mapped_column(String(200), default="")


class StudyRow(Base):
    __tablename__ = "studies"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    config_hash: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)


class ManifestVersion(Base):
    """Every stimulus set a study was served with (schema v3): the answer key of every stored response stays in
    the database, whatever later happens to the study folder."""
    __tablename__ = "manifest_versions"
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    manifest_csv: Mapped[str] = mapped_column(Text)
    study_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)            # opaque, exported
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)                             # arrival order -> trial order seed
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)         # counterbalancing slot (schema v3)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)         # sha256 of the secret invite token
    entry: Mapped[str] = mapped_column(String(16), default="invite")         # invite | code | bot
    label: Mapped[str] = mapped_column(String(200), default="")              # researcher's note (no PII please)
    created_at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)
    consented_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    role: Mapped[str | None] = mapped_column(String(64), nullable=True)
    years_experience: Mapped[float | None] = mapped_column(Float, nullable=True)
    profile_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    instructions_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    break_done_block: Mapped[int] = mapped_column(Integer, default=-1)       # breaks taken up to this block
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)   # schema v2
    # schema v4: the browser session (tab) that holds the study: the newest one, or the one that took it back
    holder_session: Mapped[str | None] = mapped_column(String(64), nullable=True)
    assignments: Mapped[list["Assignment"]] = relationship(back_populates="participant", cascade="all, delete-orphan",
                                                           passive_deletes=True)
    __table_args__ = (UniqueConstraint("study_id", "number", name="uq_participant_number"),)


class Assignment(Base):
    """One trial of one participant: which stimulus, where in the sequence, when it was handed out and when the
    browser confirmed the image had loaded, the draft answers (the authenticity answer, committed the moment it is
    given; the chosen cell type)."""
    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(16))
    trial_index: Mapped[int] = mapped_column(Integer)
    block: Mapped[int] = mapped_column(Integer, default=0)
    stimulus_id: Mapped[str] = mapped_column(String(64), index=True)
    is_attention_check: Mapped[bool] = mapped_column(Boolean, default=False)
    instructed_answer: Mapped[str | None] = mapped_column(String(16), nullable=True)
    seq: Mapped[int] = mapped_column(Integer)                                # position in the whole sequence
    first_shown_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    shown_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    shown_session: Mapped[str | None] = mapped_column(String(64), nullable=True)
    n_presentations: Mapped[int] = mapped_column(Integer, default=0)
    n_reconnects: Mapped[int] = mapped_column(Integer, default=0)            # schema v3: new browser sessions
    loaded_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)   # v3: load confirmed (this showing)
    auth_response: Mapped[str | None] = mapped_column(String(16), nullable=True)
    auth_confidence_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auth_answered_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    auth_rt_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    # schema v4: the cell type chosen before its confidence (kept over a reload) and when the screen that is now
    # answerable appeared (the choice, or its withdrawal with Backspace)
    class_choice: Mapped[str | None] = mapped_column(String(64), nullable=True)
    class_choice_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)
    participant: Mapped[Participant] = relationship(back_populates="assignments")
    response: Mapped["Response | None"] = relationship(back_populates="assignment", cascade="all, delete-orphan",
                                                       passive_deletes=True, uselist=False)
    __table_args__ = (UniqueConstraint("participant_id", "phase", "trial_index", name="uq_assignment_trial"),
                      UniqueConstraint("participant_id", "seq", name="uq_assignment_seq"))


class Response(Base):
    __tablename__ = "responses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), unique=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    auth_response: Mapped[str] = mapped_column(String(16))
    auth_confidence: Mapped[float] = mapped_column(Float)
    auth_confidence_level: Mapped[int] = mapped_column(Integer)
    class_response: Mapped[str] = mapped_column(String(64))
    class_confidence: Mapped[float] = mapped_column(Float)
    class_confidence_level: Mapped[int] = mapped_column(Integer)
    confidence_levels: Mapped[int] = mapped_column(Integer)
    auth_rt_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    class_rt_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_presentations: Mapped[int] = mapped_column(Integer, default=1)
    n_reconnects: Mapped[int] = mapped_column(Integer, default=0)            # schema v3
    image_load_ms: Mapped[float | None] = mapped_column(Float, nullable=True)   # v3: hand-out -> load confirmed
    responded_at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)
    client_note: Mapped[str] = mapped_column(Text, default="")
    assignment: Mapped[Assignment] = relationship(back_populates="response")


class AdminAttempt(Base):
    """Admin sign-in attempts (schema v3), so the back-off after wrong passwords holds across browser sessions,
    server processes and restarts."""
    __tablename__ = "admin_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTC, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)


Index("ix_assignments_participant_seq", Assignment.participant_id, Assignment.seq)
