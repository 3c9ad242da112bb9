"""The client side: what a user's process imports (never the scheduler, never torch).

``Client`` (session.py) opens connections and creates campaigns (creating.py, arms.py);
``Campaign`` (campaign.py) submits (submitting.py) and waits and solves (completion.py,
waiting.py); ``Solution`` (solution.py) is what a solve returns.
"""

from app.client.campaign import Campaign
from app.client.session import Client
from app.client.solution import Solution

__all__ = ["Campaign", "Client", "Solution"]
