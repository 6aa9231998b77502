"""What kamflow shows: the portfolio listings, the HTML report and its diagrams, text renderings."""
