"""`lgtool bench`: run the rows, count every route's cost, report and plot, recommend per size."""
