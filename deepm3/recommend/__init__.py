"""Using a trained run: recommend for any user at a query time, export, serve over HTTP."""

from deepm3.recommend.recommender import Recommender
from deepm3.recommend.requests import Recommendation, Request, RequestError, parse_request

__all__ = ["Recommendation", "Recommender", "Request", "RequestError", "parse_request"]
