"""Ingest routes: metrics and performance (API timings and Web Vitals)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(tags=["ingest"])
