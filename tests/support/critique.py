"""The record the critique tests check: an answer that invents a live price, and the honest revision."""

from selfalign.records import AlignedRecord

ANSWER = "The current price of gold is exactly 2,031 dollars an ounce, and it will rise tomorrow."
REVISION = ("I can't tell you today's gold price: I have no access to live market data, and the price changes "
            "through the day. A financial news site, your bank or a bullion dealer will show the current price "
            "per ounce and how it has moved over recent weeks.")
QUESTION = "What is the price of gold today?"


def rec(prompt=QUESTION, response=ANSWER, principles=("7",), **kw):
    return AlignedRecord.model_validate({"prompt": prompt, "thoughts": "By 7 (candor) I answer.",
                                         "response": response, "principles": list(principles), **kw})
