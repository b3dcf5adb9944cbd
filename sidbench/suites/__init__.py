"""Suites: dataset + teacher + reference statistics + metric protocols, as one named, versioned unit."""

from sidbench.suites.base import DatasetIdentity, Suite, TeacherSpec, get_suite

__all__ = ["DatasetIdentity", "Suite", "TeacherSpec", "get_suite"]
