"""Every operator the MongoDB store sends (query, update and aggregation), with the server version
that introduced it (its form as used here). A test collects the operators of every command the
store sends and fails on one missing here; the minimum server version is the highest of these."""

from __future__ import annotations

OPERATORS: dict[str, tuple[int, int]] = {
    # query and update operators
    "$elemMatch": (2, 2), "$exists": (2, 2), "$in": (3, 4), "$inc": (2, 2), "$ne": (2, 2), "$push": (2, 2),
    "$expr": (3, 6),
    # pipeline stages (updates with a pipeline, and aggregations)
    "$addFields": (3, 4), "$facet": (3, 4), "$limit": (2, 2), "$lookup": (3, 2), "$match": (2, 2),
    "$set": (4, 2), "$sort": (2, 2), "$unset": (4, 2),
    # expressions
    "$add": (2, 2), "$and": (2, 2), "$anyElementTrue": (2, 6), "$arrayElemAt": (3, 2), "$concat": (2, 4),
    "$concatArrays": (3, 2), "$cond": (2, 2), "$convert": (4, 0), "$dateFromParts": (3, 6),
    "$dateFromString": (3, 6), "$dateToString": (3, 0), "$eq": (2, 2), "$filter": (3, 2), "$gt": (2, 2),
    "$gte": (2, 2), "$ifNull": (2, 2), "$isArray": (3, 2), "$let": (2, 6), "$literal": (2, 6), "$lt": (2, 2),
    "$lte": (2, 2), "$map": (2, 6), "$max": (3, 2), "$mergeObjects": (3, 6), "$multiply": (2, 2),
    "$or": (2, 2), "$reduce": (3, 4), "$regexFind": (4, 2), "$regexMatch": (4, 2), "$size": (2, 6),
    "$slice": (3, 2), "$strLenCP": (3, 4), "$substrCP": (3, 4), "$subtract": (2, 2), "$switch": (3, 4),
    "$toDate": (4, 0), "$toInt": (4, 0), "$toLong": (4, 0), "$toString": (4, 0), "$type": (3, 4),
    # system variables
    "$$NOW": (4, 2), "$$REMOVE": (3, 6),
}

MIN_SERVER_VERSION = max(OPERATORS.values())  # (4, 2): $$NOW, $set/$unset stages in updates
