"""Segmentation service: 360 profiles, RFM, value tiers, lifecycle, tags, segments, KPIs, CLV."""
