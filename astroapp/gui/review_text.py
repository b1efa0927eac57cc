"""How the review panel words a localization: the method in a sentence rather than a dict
dump, and which inlier count is which (re-ranking vs final coregistration). Qt-free."""

from __future__ import annotations

from typing import Any


def describe_method(method: Any) -> str:
    """One readable line for a stored `method` (what ran, with which settings, and who chose)."""
    if not isinstance(method, dict) or not method:
        return "—" if not method else str(method)
    stage = method.get("stage") or "unknown"
    if stage == "manual":
        n = method.get("tie_points")
        rms = method.get("rms_px")
        text = f"manual georeferencing by {method.get('by') or 'an analyst'}"
        if n is not None:
            text += f" from {n} tie points"
        if rms is not None:
            text += f" (RMS {float(rms):.1f} px)"
        return text
    parts = [stage]
    settings = []
    if method.get("coregistration_stage") == "dense":
        # keypoints accepted no candidate; outlines matched by orientation fields did
        settings.append("orientation fields, keypoints having matched no candidate")
    elif method.get("matcher"):
        settings.append(f"{method['matcher']} matcher")
    if method.get("size"):
        settings.append(f"{method['size']} px")
    if method.get("iterations"):
        settings.append(f"{method['iterations']} iterations")
    if settings:
        parts.append("(" + ", ".join(settings) + ")")
    if method.get("model"):
        parts.append(f"after retrieval with {method['model']}" + (f", top {method['k']}" if method.get("k") else ""))
    rerank = method.get("rerank")
    if isinstance(rerank, dict):
        parts.append("and geometric re-ranking")
    if method.get("chosen_rank") is not None:
        parts.append(f"on candidate #{method['chosen_rank']} chosen by {method.get('chosen_by') or 'a reviewer'}")
    if method.get("matcher_calibrated") is False:
        parts.append("(matcher threshold not calibrated)")
    return " ".join(parts)


def rerank_inliers(method: Any) -> list:
    """Inliers of the geometric re-ranking, one per stored candidate in rank order."""
    if not isinstance(method, dict):
        return []
    rerank = method.get("rerank")
    return list(rerank.get("inliers") or []) if isinstance(rerank, dict) else []
