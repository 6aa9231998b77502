"""The process as data: workflow and portfolio definitions, validated on load, and the rules
read from them (the question bank, the reminder ladder, the selection score)."""
