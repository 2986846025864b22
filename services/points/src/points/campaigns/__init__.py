"""Campaigns: time-boxed earning bonuses (category multiplier, first order, spend threshold...)."""
