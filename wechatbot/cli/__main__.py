"""``python -m wechatbot.cli``: the ``wechatbot`` command."""
from . import main

main()
