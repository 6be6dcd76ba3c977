import json
json.dump({'score': 14}, open('/tmp/results.json', 'w'))
